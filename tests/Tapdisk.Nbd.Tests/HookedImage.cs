using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;

namespace Tapdisk.Nbd.Tests;

/// <summary>
/// A <see cref="MemoryImage"/> with test hooks: an alignment contract like VHD's (throws on unaligned ranges),
/// injected errors, and a hook that can hold requests to make completion order and drains observable.
/// </summary>
internal sealed class HookedImage : IBlockImage
{
    private readonly MemoryImage _inner;
    private int _inFlight;

    public HookedImage(long sizeBytes, int minimumBlockBytes = 1, bool readOnly = false, ImageCapabilities? capabilities = null)
    {
        _inner = new MemoryImage(sizeBytes, readOnly);
        Limits = new IoLimits(minimumBlockBytes, 4096, 32 * 1024 * 1024);
        Capabilities = capabilities ?? _inner.Capabilities;
    }

    /// <summary>Runs before every operation with its name and offset (on the I/O thread); may block or throw.</summary>
    public Func<string, long, Task>? BeforeOperation { get; set; }

    public int MaxConcurrency { get; private set; }

    public int UnalignedCalls { get; private set; }

    public string DriverName => "hooked";

    public string Path => "hooked";

    public long SizeBytes => _inner.SizeBytes;

    public bool IsReadOnly => _inner.IsReadOnly;

    public ImageCapabilities Capabilities { get; }

    public IoLimits Limits { get; }

    public IBlockImage? Parent => null;

    public int FlushCount => _inner.FlushCount;

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        RunAsync("read", offsetBytes, destination.Length, () => _inner.ReadAsync(offsetBytes, destination, cancellationToken));

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        RunAsync("write", offsetBytes, source.Length, () => _inner.WriteAsync(offsetBytes, source, flags, cancellationToken));

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        RunAsync("flush", 0, 0, () => _inner.FlushAsync(cancellationToken));

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        RunAsync("trim", offsetBytes, lengthBytes, () => _inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken));

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        RunAsync("zero", offsetBytes, lengthBytes, () => _inner.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken));

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default) =>
        RunAsync("extents", offsetBytes, lengthBytes, () => _inner.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken));

    private async ValueTask RunAsync(string operation, long offsetBytes, long lengthBytes, Func<ValueTask> action)
    {
        if (offsetBytes % Limits.MinimumBlockBytes != 0 || lengthBytes % Limits.MinimumBlockBytes != 0)
        {
            UnalignedCalls++;
            throw new ErrnoIOException(Errno.EINVAL, Path, $"unaligned {operation} {offsetBytes}+{lengthBytes}");
        }

        int now = Interlocked.Increment(ref _inFlight);
        lock (_inner)
        {
            MaxConcurrency = Math.Max(MaxConcurrency, now);
        }

        try
        {
            if (BeforeOperation is { } hook)
            {
                await hook(operation, offsetBytes);
            }

            await action();
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    public void Dispose() => _inner.Dispose();

    public ValueTask DisposeAsync() => _inner.DisposeAsync();
}
