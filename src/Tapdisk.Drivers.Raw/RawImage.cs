using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Raw;

/// <summary>
/// A raw image. Reads, writes, flushes, trims and zeroes go through the calling thread's io_uring loop when it has
/// one (they complete later, on that thread) and are blocking pread/pwrite/fallocate otherwise, run on I/O workers.
/// </summary>
public sealed class RawImage : IBlockImage
{
    private readonly ImageFile _file;
    private int _disposed;

    private RawImage(ImageFile file, long sizeBytes)
    {
        _file = file;
        SizeBytes = sizeBytes;
        var caps = ImageCapabilities.Flush | ImageCapabilities.MultiConnSafe;
        if (!file.IsReadOnly)
        {
            caps |= ImageCapabilities.Write | ImageCapabilities.Fua | ImageCapabilities.Trim | ImageCapabilities.Zero;
            if (!file.IsBlockDevice)
            {
                caps |= ImageCapabilities.FastZero;
            }
        }

        if (!file.IsBlockDevice)
        {
            caps |= ImageCapabilities.Extents;
        }

        Capabilities = caps;
        Limits = new IoLimits(file.IsDirect ? file.LogicalBlockSize : 1, 4096, 32 * 1024 * 1024);
    }

    public string DriverName => RawImageDriver.DriverName;

    public string Path => _file.Path;

    public long SizeBytes { get; }

    public bool IsReadOnly => _file.IsReadOnly;

    public ImageCapabilities Capabilities { get; }

    public IoLimits Limits { get; }

    public IBlockImage? Parent => null;

    /// <summary>True if the file is open with O_DIRECT.</summary>
    public bool IsDirect => _file.IsDirect;

    public static RawImage Open(string path, ImageOpenOptions options)
    {
        ImageFile file = ImageFile.Open(path, options.ReadOnly, options.DirectIo);
        try
        {
            // blktap sizes a file by st_size rounded down to whole sectors; we keep bytes exact for NBD,
            // and refuse nothing: a zero-length file is a zero-length disk (blktap's 16836057-sector quirk is not copied).
            return new RawImage(file, file.Length);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Sectors read from this file (a raw image is always the bottom of its chain).</summary>
    public LayerCounters Counters { get; } = new();

    /// <summary>
    /// Everything but extent queries (lseek) blocks its caller only where the thread has no I/O loop: trim and zero
    /// are fallocate calls through the ring, and so is zero's fallback of written zeros.
    /// </summary>
    public bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) =>
        operation == BlockOperation.Query || ImageFile.MayBlockHere;

#pragma warning disable CA2012 // Each ValueTask is consumed once: read here when complete, else awaited once.
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        ValueTask<int> read = _file.ReadAsync(destination, offsetBytes);
        if (!read.IsCompletedSuccessfully)
        {
            return FinishReadAsync(read, destination);
        }

        FinishRead(read.Result, destination.Span);
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        ValueTask write = _file.WriteAsync(source, offsetBytes);
        if ((flags & WriteFlags.Fua) == 0)
        {
            return write;
        }

        if (!write.IsCompletedSuccessfully)
        {
            return FlushAfterAsync(write);
        }

        write.GetAwaiter().GetResult();
        return _file.FlushAsync();
    }
#pragma warning restore CA2012

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _file.FlushAsync();

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask FinishReadAsync(ValueTask<int> read, Memory<byte> destination)
    {
        int n = await read.ConfigureAwait(false);
        FinishRead(n, destination.Span);
    }

    private void FinishRead(int n, Span<byte> destination)
    {
        if (n < destination.Length)
        {
            // The file shrank under us: what is gone reads as zeros rather than failing the guest.
            destination[n..].Clear();
        }

        Counters.CountRead(destination.Length);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask FlushAfterAsync(ValueTask write)
    {
        await write.ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    public async ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            throw StorageErrors.ReadOnly(Path);
        }

        // Discard is advisory: a file system that cannot punch holes simply keeps the data (NBD allows this).
        await _file.TryPunchHoleAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    public async ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            throw StorageErrors.ReadOnly(Path);
        }

        bool done = (flags & ZeroFlags.NoHole) == 0 && !_file.IsBlockDevice
            ? await _file.TryPunchHoleAsync(offsetBytes, lengthBytes).ConfigureAwait(false)
            : await _file.TryZeroRangeAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
        if (!done && (flags & ZeroFlags.NoHole) == 0)
        {
            done = await _file.TryZeroRangeAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
        }

        if (!done)
        {
            if ((flags & ZeroFlags.FastOnly) != 0)
            {
                throw new ErrnoIOException(Errno.EOPNOTSUPP, Path, "fast zero");
            }

            await _file.WriteZerosAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
        }

        if ((flags & ZeroFlags.Fua) != 0)
        {
            await _file.FlushAsync().ConfigureAwait(false);
        }
    }

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        try
        {
            long end = offsetBytes + lengthBytes;
            if (_file.IsBlockDevice)
            {
                extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
                return ValueTask.CompletedTask;
            }

            long pos = offsetBytes;
            while (pos < end)
            {
                (long data, long dataEnd) = _file.FindData(pos);
                if (data < 0 || data >= end)
                {
                    // No more data in range.
                    extents.Add(pos, end - pos, ExtentFlags.Hole | ExtentFlags.Zero);
                    break;
                }

                if (data > pos)
                {
                    extents.Add(pos, data - pos, ExtentFlags.Hole | ExtentFlags.Zero);
                }

                dataEnd = Math.Min(dataEnd, end);
                extents.Add(data, dataEnd - data, ExtentFlags.Data);
                pos = dataEnd;
            }

            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException(e);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _file.Dispose();
        }
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
