using Tapdisk.Storage;

namespace Tapdisk.Testing;

/// <summary>An in-memory image for protocol tests (nbdkit's memory plugin): sparse at 64 KiB granularity, real extents.</summary>
public sealed class MemoryImage : IBlockImage
{
    private const int ChunkBytes = 64 * 1024;
    private readonly Dictionary<long, byte[]> _chunks = [];
    private readonly Lock _lock = new();

    public MemoryImage(long sizeBytes, bool readOnly = false)
    {
        SizeBytes = sizeBytes;
        IsReadOnly = readOnly;
    }

    public string DriverName => "memory";

    public string Path => "memory";

    public long SizeBytes { get; }

    public bool IsReadOnly { get; }

    public ImageCapabilities Capabilities => (IsReadOnly ? ImageCapabilities.None : ImageCapabilities.Write | ImageCapabilities.Trim | ImageCapabilities.Zero | ImageCapabilities.FastZero)
        | ImageCapabilities.Flush | ImageCapabilities.Fua | ImageCapabilities.Extents | ImageCapabilities.MultiConnSafe;

    public IoLimits Limits => new(1, 4096, 32 * 1024 * 1024);

    public IBlockImage? Parent => null;

    /// <summary>Memory never holds its caller: the ring runs requests inline, as it would over an io_uring engine.</summary>
    public bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => false;

    public int FlushCount { get; private set; }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            Span<byte> dst = destination.Span;
            while (!dst.IsEmpty)
            {
                long chunk = offsetBytes / ChunkBytes;
                int within = (int)(offsetBytes % ChunkBytes);
                int n = Math.Min(dst.Length, ChunkBytes - within);
                if (_chunks.TryGetValue(chunk, out byte[]? data))
                {
                    data.AsSpan(within, n).CopyTo(dst);
                }
                else
                {
                    dst[..n].Clear();
                }

                dst = dst[n..];
                offsetBytes += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            ReadOnlySpan<byte> src = source.Span;
            while (!src.IsEmpty)
            {
                long chunk = offsetBytes / ChunkBytes;
                int within = (int)(offsetBytes % ChunkBytes);
                int n = Math.Min(src.Length, ChunkBytes - within);
                if (!_chunks.TryGetValue(chunk, out byte[]? data))
                {
                    data = new byte[ChunkBytes];
                    _chunks[chunk] = data;
                }

                src[..n].CopyTo(data.AsSpan(within));
                src = src[n..];
                offsetBytes += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            FlushCount++;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) => ZeroAsync(offsetBytes, lengthBytes, ZeroFlags.None, cancellationToken);

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            long end = offsetBytes + lengthBytes;
            while (offsetBytes < end)
            {
                long chunk = offsetBytes / ChunkBytes;
                int within = (int)(offsetBytes % ChunkBytes);
                int n = (int)Math.Min(end - offsetBytes, ChunkBytes - within);
                if (_chunks.TryGetValue(chunk, out byte[]? data))
                {
                    if (n == ChunkBytes && (flags & ZeroFlags.NoHole) == 0)
                    {
                        _chunks.Remove(chunk);
                    }
                    else
                    {
                        data.AsSpan(within, n).Clear();
                    }
                }

                offsetBytes += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            long end = offsetBytes + lengthBytes;
            while (offsetBytes < end)
            {
                long chunk = offsetBytes / ChunkBytes;
                int within = (int)(offsetBytes % ChunkBytes);
                long n = Math.Min(end - offsetBytes, ChunkBytes - within);
                extents.Add(offsetBytes, n, _chunks.ContainsKey(chunk) ? ExtentFlags.Data : ExtentFlags.Hole | ExtentFlags.Zero);
                offsetBytes += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public void Dispose()
    {
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
