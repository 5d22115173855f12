using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cache.Tests;

/// <summary>
/// A differencing leaf in memory: a sector bitmap over a parent, as a VHD leaf is. Writes can be held (the first one
/// after <see cref="HoldNextWrite"/> blocks its thread until <see cref="ReleaseWrite"/>) or fail with ENOSPC.
/// </summary>
internal sealed class OverlayImage : IBlockImage
{
    private const int Sector = 512;
    private readonly byte[] _data;
    private readonly bool[] _present;
    private readonly Lock _lock = new();
    private readonly ManualResetEventSlim _writeReleased = new(initialState: true);
    private readonly SemaphoreSlim _writeEntered = new(0);
    private int _holdNext;

    public OverlayImage(IBlockImage parent, bool readOnly = false)
    {
        Parent = parent;
        IsReadOnly = readOnly;
        _data = new byte[parent.SizeBytes];
        _present = new bool[parent.SizeBytes / Sector];
    }

    public string DriverName => "overlay";

    public string Path => "overlay";

    public long SizeBytes => _data.Length;

    public bool IsReadOnly { get; }

    public ImageCapabilities Capabilities => ImageCapabilities.Write | ImageCapabilities.Flush | ImageCapabilities.Trim | ImageCapabilities.Zero;

    public IoLimits Limits => new(Sector, 4096, 32 * 1024 * 1024);

    public IBlockImage? Parent { get; }

    /// <summary>Writes fail with ENOSPC while set.</summary>
    public bool Full { get; set; }

    public int Writes { get; private set; }

    public void HoldNextWrite()
    {
        _writeReleased.Reset();
        Volatile.Write(ref _holdNext, 1);
    }

    public void ReleaseWrite() => _writeReleased.Set();

    /// <summary>Blocks until a held write has reached the image (hang guard only).</summary>
    public void WaitForHeldWrite()
    {
        if (!_writeEntered.Wait(TimeSpan.FromSeconds(60)))
        {
            throw new TimeoutException("no write reached the image");
        }
    }

    public bool Holds(long offsetBytes)
    {
        lock (_lock)
        {
            return _present[offsetBytes / Sector];
        }
    }

    public byte[] OwnBytes(long offsetBytes, int length)
    {
        lock (_lock)
        {
            return _data.AsSpan((int)offsetBytes, length).ToArray();
        }
    }

    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        for (int i = 0; i < destination.Length; i += Sector)
        {
            bool own;
            lock (_lock)
            {
                own = _present[(offsetBytes + i) / Sector];
                if (own)
                {
                    _data.AsSpan((int)(offsetBytes + i), Sector).CopyTo(destination.Span[i..]);
                }
            }

            if (!own)
            {
                await Parent!.ReadAsync(offsetBytes + i, destination.Slice(i, Sector), cancellationToken);
            }
        }
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _holdNext, 0) == 1)
        {
            _writeEntered.Release();
            _writeReleased.Wait(CancellationToken.None);
        }

        if (Full)
        {
            return ValueTask.FromException(new ErrnoIOException(Errno.ENOSPC, Path, "write"));
        }

        lock (_lock)
        {
            Writes++;
            source.Span.CopyTo(_data.AsSpan((int)offsetBytes));
            _present.AsSpan((int)(offsetBytes / Sector), source.Length / Sector).Fill(true);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _present.AsSpan((int)(offsetBytes / Sector), (int)(lengthBytes / Sector)).Clear();
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        WriteAsync(offsetBytes, new byte[lengthBytes], WriteFlags.None, cancellationToken);

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
        return ValueTask.CompletedTask;
    }

    public ValueTask GetOwnAllocationAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            for (long at = offsetBytes; at < offsetBytes + lengthBytes; at += Sector)
            {
                extents.Add(at, Sector, _present[at / Sector] ? ExtentFlags.Data : ExtentFlags.Hole);
            }
        }

        return ValueTask.CompletedTask;
    }

    public void Dispose() => Parent!.Dispose();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
