using System.Diagnostics;
using System.Runtime.CompilerServices;
using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// The operations a frontend runs for a request it holds in the gate. Ranges, read-only and capabilities were checked
/// by <see cref="Validate"/>; here each call goes to the top of the stack, is counted once when it completes, and a
/// failure is logged once (rate-limited per VBD) and rethrown for the frontend to answer. A driver that throws
/// synchronously fails that request alone.
/// </summary>
public sealed partial class BlockBackend
{
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        long started = Submitted(write: false);
        ValueTask operation;
        try
        {
            operation = Volatile.Read(ref _top).ReadAsync(offsetBytes, destination, cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            operation = ValueTask.FromException(e);
        }

        return Track(operation, BlockOperation.Read, offsetBytes, destination.Length, started);
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        long started = Submitted(write: true);
        ValueTask operation;
        try
        {
            operation = Volatile.Read(ref _top).WriteAsync(offsetBytes, source, flags, cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            operation = ValueTask.FromException(e);
        }

        return Track(operation, BlockOperation.Write, offsetBytes, source.Length, started);
    }

    /// <summary>Makes completed writes durable; a stack without flush (read-only, or nothing cached) answers at once.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        BlockSizeFilter top = Volatile.Read(ref _top);
        if ((top.Capabilities & ImageCapabilities.Flush) == 0)
        {
            return ValueTask.CompletedTask;
        }

        ValueTask operation;
        try
        {
            operation = top.FlushAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            operation = ValueTask.FromException(e);
        }

        return Track(operation, BlockOperation.Flush, 0, 0, 0);
    }

    /// <summary>Discards a range (advisory: only whole blocks inside it are discarded).</summary>
    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        ValueTask operation;
        try
        {
            operation = Volatile.Read(ref _top).TrimAsync(offsetBytes, lengthBytes, cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            operation = ValueTask.FromException(e);
        }

        return Track(operation, BlockOperation.Trim, offsetBytes, lengthBytes, 0);
    }

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        long started = Submitted(write: true);
        ValueTask operation;
        try
        {
            operation = Volatile.Read(ref _top).ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            operation = ValueTask.FromException(e);
        }

        return Track(operation, BlockOperation.Zero, offsetBytes, lengthBytes, started);
    }

    /// <summary>The allocation map over at least the range (widened to whole blocks); not counted in the statistics.</summary>
    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        try
        {
            return Volatile.Read(ref _top).GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return ValueTask.FromException(e);
        }
    }

    /// <summary>
    /// Counts sectors that read as zeros without touching the stack (a sparse NBD read's holes): blktap's secs count
    /// every sector a guest read, holes included.
    /// </summary>
    public void CountHoleRead(long lengthBytes)
    {
        Interlocked.Add(ref _readSectors, lengthBytes / IoLimits.SectorSize);
        Volatile.Read(ref _statsPage)?.AddReadSectors(lengthBytes / IoLimits.SectorSize);
    }

#pragma warning disable CA2012 // Each ValueTask is consumed exactly once: GetResult here when complete, else awaited once.
    private ValueTask Track(ValueTask operation, BlockOperation kind, long offsetBytes, long lengthBytes, long started)
    {
        if (operation.IsCompletedSuccessfully)
        {
            // GetResult returns a pooled source to its pool; skipping it would leave the box to the GC.
            operation.GetAwaiter().GetResult();
            Count(kind, lengthBytes, started);
            return ValueTask.CompletedTask;
        }

        return TrackSlowAsync(operation, kind, offsetBytes, lengthBytes, started);
    }
#pragma warning restore CA2012

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask TrackSlowAsync(ValueTask operation, BlockOperation kind, long offsetBytes, long lengthBytes, long started)
    {
        try
        {
            await operation.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed(kind, offsetBytes, lengthBytes, e);
            throw;
        }

        Count(kind, lengthBytes, started);
    }

    /// <summary>A read or write taken in: counted on the published page, if any; returns its start time (0 without a page).</summary>
    private long Submitted(bool write)
    {
        TdStatsPage? page = Volatile.Read(ref _statsPage);
        if (page is null)
        {
            return 0;
        }

        page.Submitted(write);
        return Stopwatch.GetTimestamp();
    }

    private void Count(BlockOperation kind, long lengthBytes, long started)
    {
        long sectors = lengthBytes / IoLimits.SectorSize;
        bool write;
        if (kind == BlockOperation.Read)
        {
            Interlocked.Add(ref _readSectors, sectors);
            write = false;
        }
        else if (kind is BlockOperation.Write or BlockOperation.Zero)
        {
            Interlocked.Add(ref _writeSectors, sectors);
            write = true;
        }
        else
        {
            return;
        }

        if (started != 0)
        {
            Volatile.Read(ref _statsPage)?.Completed(write, sectors, (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds);
        }
    }

    private void Failed(BlockOperation kind, long offsetBytes, long lengthBytes, Exception e)
    {
        if (kind is BlockOperation.Read or BlockOperation.Write or BlockOperation.Zero)
        {
            Volatile.Read(ref _statsPage)?.Failed();
        }

        if (kind == BlockOperation.Read)
        {
            Interlocked.Add(ref _readFailedSectors, lengthBytes / IoLimits.SectorSize);
        }
        else if (kind is BlockOperation.Write or BlockOperation.Zero or BlockOperation.Trim)
        {
            Interlocked.Add(ref _writeFailedSectors, lengthBytes / IoLimits.SectorSize);
        }

        if (e is OperationCanceledException)
        {
            // The frontend gave up on the request (client gone, server stopping): not a storage fault.
            return;
        }

        if (_logLimit.TryTake(out long suppressed))
        {
            if (suppressed > 0)
            {
                Log.Suppressed(_logger, Name, suppressed);
            }

            Log.RequestFailed(_logger, Name, kind, lengthBytes, offsetBytes, StorageErrors.ToErrno(e), e);
        }
    }
}
