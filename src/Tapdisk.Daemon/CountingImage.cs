using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>
/// Wraps a VBD's chain to count what stats reports (sectors read/written, failures, requests in flight) and to log
/// each failed request once, rate-limited, with the disk identified. Failures are never retried here: a request that
/// fails at the image fails fast to its client.
/// </summary>
internal sealed class CountingImage : IBlockImage
{
    private readonly IBlockImage _inner;
    private readonly Action<string, Exception> _onFailure;
    private long _readSectors;
    private long _writeSectors;
    private long _readFailedSectors;
    private long _writeFailedSectors;
    private int _inFlight;

    public CountingImage(IBlockImage inner, Action<string, Exception> onFailure)
    {
        _inner = inner;
        _onFailure = onFailure;
    }

    public IBlockImage Inner => _inner;

    public long ReadSectors => Volatile.Read(ref _readSectors);

    public long WriteSectors => Volatile.Read(ref _writeSectors);

    public long ReadFailedSectors => Volatile.Read(ref _readFailedSectors);

    public long WriteFailedSectors => Volatile.Read(ref _writeFailedSectors);

    public int InFlight => Volatile.Read(ref _inFlight);

    public string DriverName => _inner.DriverName;

    public string Path => _inner.Path;

    public long SizeBytes => _inner.SizeBytes;

    public bool IsReadOnly => _inner.IsReadOnly;

    public ImageCapabilities Capabilities => _inner.Capabilities;

    public IoLimits Limits => _inner.Limits;

    public IBlockImage? Parent => _inner.Parent;

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        Track(_inner.ReadAsync(offsetBytes, destination, cancellationToken), isWrite: false, offsetBytes, destination.Length, "read");

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        Track(_inner.WriteAsync(offsetBytes, source, flags, cancellationToken), isWrite: true, offsetBytes, source.Length, "write");

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        Track(_inner.FlushAsync(cancellationToken), isWrite: true, 0, 0, "flush");

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        Track(_inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken), isWrite: true, offsetBytes, 0, "discard");

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        Track(_inner.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken), isWrite: true, offsetBytes, 0, "write-zeroes");

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default) =>
        _inner.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);

    public void Dispose() => _inner.Dispose();

    public ValueTask DisposeAsync() => _inner.DisposeAsync();

    private ValueTask Track(ValueTask operation, bool isWrite, long offsetBytes, long lengthBytes, string what)
    {
        if (operation.IsCompletedSuccessfully)
        {
            Count(isWrite, lengthBytes);
            return ValueTask.CompletedTask;
        }

        return TrackSlow(operation, isWrite, offsetBytes, lengthBytes, what);
    }

    private async ValueTask TrackSlow(ValueTask operation, bool isWrite, long offsetBytes, long lengthBytes, string what)
    {
        Interlocked.Increment(ref _inFlight);
        try
        {
            await operation.ConfigureAwait(false);
            Count(isWrite, lengthBytes);
        }
        catch (Exception e)
        {
            Interlocked.Add(ref isWrite ? ref _writeFailedSectors : ref _readFailedSectors, lengthBytes / IoLimits.SectorSize);
            _onFailure($"{what} of {lengthBytes} bytes at offset {offsetBytes}", e);
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private void Count(bool isWrite, long lengthBytes)
    {
        if (lengthBytes > 0)
        {
            Interlocked.Add(ref isWrite ? ref _writeSectors : ref _readSectors, lengthBytes / IoLimits.SectorSize);
        }
    }
}
