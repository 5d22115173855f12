using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cbt;

/// <summary>
/// blktap's "log" filter (changed block tracking, data-plane.md 7.1): above the leaf, every write marks the 64 KiB
/// units it touches in the log's bitmap before it is forwarded (a write that then fails stays marked, as in blktap);
/// reads pass through. The log is mapped shared, as blktap maps it, so a marked bit is in the page cache before the
/// write is forwarded and survives a kill of the process.
/// Deliberate differences from blktap: a log too short for the disk (or whose header names a smaller disk) is refused
/// at open instead of losing bits or spinning on SIGBUS; FLUSH and FUA make the bits durable (msync) before they are
/// answered; trims and zeroes mark their units too, since they change what a backup must copy.
/// </summary>
public sealed class CbtLogFilter : BlockFilter, IChangeTracker
{
    public const string Name = "log";

    /// <summary>The name NBD exports publish the log under: qemu:dirty-bitmap:cbt (whichever log is attached now).</summary>
    public const string DirtyBitmapName = "cbt";

    private readonly string _logPath;
    private readonly SafeFdHandle _fd;
    private readonly SharedFileMapping _map;
    private readonly long _units;
    private int _dirty;
    private int _closed;

    private CbtLogFilter(IBlockImage next, string logPath, SafeFdHandle fd, SharedFileMapping map, long units)
        : base(next)
    {
        _logPath = logPath;
        _fd = fd;
        _map = map;
        _units = units;
    }

    public override string DriverName => Name;

    /// <summary>The log file's path exactly as given (stats print it as the layer's name, as blktap does).</summary>
    public override string Path => _logPath;

    /// <summary>Number of 64 KiB units the disk has (bits in use in the bitmap).</summary>
    public long Units => _units;

    public string BitmapName => DirtyBitmapName;

    public int UnitBytes => CbtBitmap.UnitBytes;

    /// <summary>
    /// Wraps <paramref name="next"/> with the log at <paramref name="logPath"/>, which must exist (cbt-util create) and
    /// hold a bitmap for at least the disk's size; otherwise an <see cref="ImageOpenException"/> says why, and nothing
    /// is written to the log.
    /// </summary>
    public static CbtLogFilter Open(IBlockImage next, string logPath)
    {
        ArgumentNullException.ThrowIfNull(next);
        ArgumentNullException.ThrowIfNull(logPath);
        if (logPath.Length == 0)
        {
            throw new ImageOpenException(logPath, Errno.EINVAL, "no CBT log path given");
        }

        int errno = PosixFile.TryOpen(logPath, OpenFlags.ReadWrite, 0, out SafeFdHandle fd);
        if (errno != 0)
        {
            fd.Dispose();
            throw new ImageOpenException(logPath, errno, $"cannot open the CBT log: {Errno.Describe(errno)}");
        }

        try
        {
            ulong diskBytes = (ulong)next.SizeBytes;
            ulong bitmapBytes = CbtBitmap.BitmapBytes(diskBytes);
            ulong needed = CbtLogHeader.Size + bitmapBytes;
            FileStatus status = PosixFile.Stat(fd, logPath);
            if (!status.IsRegularFile)
            {
                throw new ImageOpenException(logPath, Errno.EINVAL, "the CBT log is not a regular file");
            }

            if ((ulong)status.Size < needed)
            {
                throw new ImageOpenException(logPath, Errno.EINVAL,
                    $"the CBT log is {status.Size} bytes but a disk of {diskBytes} bytes needs {needed} (48-byte header and {bitmapBytes}-byte bitmap); grow it with cbt-util set -s {diskBytes}");
            }

            Span<byte> headerBytes = stackalloc byte[CbtLogHeader.Size];
            if (PosixFile.Read(fd, headerBytes, 0, logPath) != CbtLogHeader.Size)
            {
                throw new ImageOpenException(logPath, Errno.EIO, "short read of the CBT log header");
            }

            CbtLogHeader header = CbtLogHeader.Read(headerBytes);
            if (header.DiskSizeBytes < diskBytes)
            {
                throw new ImageOpenException(logPath, Errno.EINVAL,
                    $"the CBT log records a disk of {header.DiskSizeBytes} bytes, smaller than this disk ({diskBytes} bytes); grow it with cbt-util set -s {diskBytes}");
            }

            if (needed > int.MaxValue - 8)
            {
                throw new ImageOpenException(logPath, Errno.EFBIG, $"a disk of {diskBytes} bytes is beyond the CBT log's limit");
            }

            // Whole 8-byte words (bits are set a word at a time): the last one may run past the file's end but never
            // past its last page, so no store can fault.
            int mapLength = (int)((needed + 7) & ~7UL);
            SharedFileMapping map = SharedFileMapping.Map(fd, mapLength, logPath);
            long units = (long)((diskBytes + CbtBitmap.UnitBytes - 1) / CbtBitmap.UnitBytes);
            return new CbtLogFilter(next, logPath, fd, map, units);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        if (!source.IsEmpty)
        {
            try
            {
                Mark(offsetBytes, source.Length, durable: (flags & WriteFlags.Fua) != 0);
            }
            catch (ErrnoIOException e)
            {
                return ValueTask.FromException(e);
            }
        }

        return Next.WriteAsync(offsetBytes, source, flags, cancellationToken);
    }

    public override ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        if (lengthBytes > 0)
        {
            Mark(offsetBytes, lengthBytes, durable: false);
        }

        return Next.TrimAsync(offsetBytes, lengthBytes, cancellationToken);
    }

    public override ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        if (lengthBytes > 0)
        {
            Mark(offsetBytes, lengthBytes, durable: false);
        }

        return Next.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);
    }

    /// <summary>Makes every bit set so far durable, then flushes the layers below.</summary>
    public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            SyncIfDirty();
        }
        catch (ErrnoIOException e)
        {
            return ValueTask.FromException(e);
        }

        return Next.FlushAsync(cancellationToken);
    }

    /// <summary>Whether <paramref name="unit"/>'s bit is set.</summary>
    public bool IsMarked(long unit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(unit);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(unit, _units);
        int wordOffset = CbtLogHeader.Size + (int)((unit >> 6) << 3);
        return (_map.ReadUInt64(wordOffset) & (1UL << (int)(unit & 63))) != 0;
    }

    /// <summary>Sets the bits of every unit [offset, offset + length) touches; with <paramref name="durable"/>, msyncs their pages first.</summary>
    private void Mark(long offsetBytes, long lengthBytes, bool durable)
    {
        (long first, long last) = CbtBitmap.Units(offsetBytes, lengthBytes);
        System.Diagnostics.Debug.Assert(first >= 0 && last < _units, "the backend validated the range");
        bool changed = false;
        long word = first >> 6;
        long lastWord = last >> 6;
        for (; word <= lastWord; word++)
        {
            int low = word == first >> 6 ? (int)(first & 63) : 0;
            int high = word == lastWord ? (int)(last & 63) : 63;
            ulong mask = (ulong.MaxValue >> (63 - high)) & (ulong.MaxValue << low);
            changed |= _map.OrUInt64(CbtLogHeader.Size + (int)(word << 3), mask);
        }

        if (changed)
        {
            // Release: a flush that reads the flag as clear after this store is ordered after the bits above.
            Volatile.Write(ref _dirty, 1);
        }

        if (durable)
        {
            int from = CbtLogHeader.Size + (int)((first >> 6) << 3);
            int to = CbtLogHeader.Size + (int)((lastWord + 1) << 3);
            _map.Sync(from, to - from);
        }
    }

    private void SyncIfDirty()
    {
        // Acquire/exchange pairs with the Volatile.Write in Mark: every bit set before the flag was raised is synced.
        if (Interlocked.Exchange(ref _dirty, 0) != 0)
        {
            _map.Sync(0, _map.Length);
        }
    }

    /// <summary>Leaves the log complete on disk (msync), unmaps and closes it; once.</summary>
    private void CloseLog()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        try
        {
            _map.Sync(0, _map.Length);
        }
        finally
        {
            _map.Dispose();
            _fd.Dispose();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                CloseLog();
            }
            finally
            {
                base.Dispose(disposing);
            }
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            CloseLog();
        }
        finally
        {
            await base.DisposeCoreAsync().ConfigureAwait(false);
        }
    }
}
