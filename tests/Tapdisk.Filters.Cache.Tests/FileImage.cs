using Microsoft.Win32.SafeHandles;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cache.Tests;

/// <summary>A read-only image over a real file (the cache keys sets by the file's identity), counting what it reads.</summary>
internal sealed class FileImage(string path) : IBlockImage
{
    private readonly SafeFileHandle _handle = File.OpenHandle(path);
    private long _bytesRead;

    public string DriverName => "aio";

    public string Path => path;

    public long SizeBytes => RandomAccess.GetLength(_handle);

    public bool IsReadOnly => true;

    public ImageCapabilities Capabilities => ImageCapabilities.None;

    public IoLimits Limits => new(512, 4096, 32 * 1024 * 1024);

    public IBlockImage? Parent => null;

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        int n = RandomAccess.Read(_handle, destination.Span, offsetBytes);
        destination.Span[n..].Clear();
        Interlocked.Add(ref _bytesRead, destination.Length);
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(StorageErrors.ReadOnly(path));

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) => ValueTask.FromException(StorageErrors.ReadOnly(path));

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(StorageErrors.ReadOnly(path));

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
        return ValueTask.CompletedTask;
    }

    public void Dispose() => _handle.Dispose();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
