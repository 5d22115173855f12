using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// A file or block device opened for positional I/O, O_DIRECT by default. Requests that O_DIRECT cannot take
/// (unaligned buffer: bounced; unaligned offset or length: through a second, buffered descriptor) still work,
/// so drivers never see alignment errors. Linux keeps the page cache coherent with direct I/O on the same inode.
/// The async calls (reads, writes, flushes, fallocate) go through the calling thread's <see cref="IoLoop"/> when it
/// has one (io_uring), else run synchronously; the synchronous calls always block.
/// </summary>
public sealed class ImageFile : IDisposable
{
    private readonly SafeFdHandle _fd;
    private SafeFdHandle? _bufferedFd;
    private readonly Lock _bufferedLock = new();
    private readonly OpenFlags _baseFlags;
    private readonly bool _openedDirect;
    private volatile bool _direct;

    // The last data run SEEK_DATA/SEEK_HOLE found, [start, end), as qemu's file driver keeps one (its block-status
    // cache): sparse reads ask for every request's extents, and SEEK_HOLE costs a walk to the run's end (on tmpfs, of
    // the file's pages: milliseconds for 1 GiB), or a round trip on NFS. Writes only add data, so the run stays true
    // until something makes a hole: punch, zero range, truncate. Those bump the generation before and after they run,
    // so a lookup that raced one is not remembered; a stale run could only call zeros data, which a read still serves.
    private readonly Lock _dataRunLock = new();
    private long _dataRunStart;
    private long _dataRunEnd;
    private long _holeGeneration;

    private ImageFile(string path, SafeFdHandle fd, OpenFlags baseFlags, bool direct, FileStatus status)
    {
        Path = path;
        _fd = fd;
        _baseFlags = baseFlags;
        _direct = direct;
        _openedDirect = direct;
        IsBlockDevice = status.IsBlockDevice;
        LogicalBlockSize = status.IsBlockDevice ? PosixFile.LogicalSectorSize(fd, path) : IoLimits.SectorSize;
        IsReadOnly = (baseFlags & OpenFlags.ReadWrite) == 0;
    }

    public string Path { get; }

    public bool IsReadOnly { get; }

    public bool IsDirect => _direct;

    public bool IsBlockDevice { get; }

    /// <summary>The alignment O_DIRECT needs for offsets and lengths.</summary>
    public int LogicalBlockSize { get; }

    public SafeFdHandle Handle => _fd;

    /// <summary>Opens an existing file or device; O_DIRECT unless <paramref name="direct"/> is false or the file system refuses it.</summary>
    public static ImageFile Open(string path, bool readOnly, bool direct)
    {
        OpenFlags baseFlags = readOnly ? OpenFlags.ReadOnly : OpenFlags.ReadWrite;
        SafeFdHandle fd;
        bool isDirect = direct;
        int errno = PosixFile.TryOpen(path, baseFlags | (direct ? OpenFlags.Direct : 0), 0, out fd);
        if (errno == Errno.EINVAL && direct)
        {
            // tmpfs and some FUSE file systems refuse O_DIRECT: fall back to buffered I/O, as blktap does.
            fd.Dispose();
            isDirect = false;
            errno = PosixFile.TryOpen(path, baseFlags, 0, out fd);
        }

        if (errno != 0)
        {
            fd.Dispose();
            throw new ErrnoIOException(errno, path, "open");
        }

        try
        {
            FileStatus status = PosixFile.Stat(fd, path);
            if (!status.IsBlockDevice && !status.IsRegularFile)
            {
                throw new ErrnoIOException(Errno.EINVAL, path, "open (not a regular file or block device)");
            }

            return new ImageFile(path, fd, baseFlags, isDirect, status);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Creates a file and opens it read-write, buffered; an existing file is truncated only if <paramref name="overwrite"/>.</summary>
    public static ImageFile Create(string path, bool overwrite = false)
    {
        SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.Create | (overwrite ? OpenFlags.Truncate : OpenFlags.Exclusive));
        return new ImageFile(path, fd, OpenFlags.ReadWrite, direct: false, PosixFile.Stat(fd, path));
    }

    /// <summary>Current size: st_size for files, BLKGETSIZE64 for devices.</summary>
    public long Length => IsBlockDevice ? PosixFile.BlockDeviceSize(_fd, Path) : PosixFile.Stat(_fd, Path).Size;

    public FileStatus Status => PosixFile.Stat(_fd, Path);

    /// <summary>Reads up to the buffer's length; returns fewer bytes only at end of file.</summary>
    public int Read(Span<byte> destination, long offsetBytes)
    {
        if (_direct && IsDirectAligned(offsetBytes, destination.Length))
        {
            if (PosixFile.IsAligned(destination, LogicalBlockSize))
            {
                try
                {
                    return PosixFile.Read(_fd, destination, offsetBytes, Path);
                }
                catch (ErrnoIOException e) when (e.Errno == Errno.EINVAL)
                {
                    DisableDirect();
                }
            }
            else
            {
                return BounceRead(destination, offsetBytes);
            }
        }

        return PosixFile.Read(BufferedFd(), destination, offsetBytes, Path);
    }

    /// <summary>
    /// Whether I/O issued from the calling thread blocks it: false on an <see cref="IoLoop"/> thread, where the async
    /// calls complete through the ring (a layer's <see cref="IBlockImage.MayBlock"/>).
    /// </summary>
    public static bool MayBlockHere => IoLoop.Current is null;

    /// <summary><see cref="Read"/> through the thread's ring when it has one (else synchronously); I/O errors fault the task.</summary>
    public ValueTask<int> ReadAsync(Memory<byte> destination, long offsetBytes)
    {
        IoLoop? loop = IoLoop.Current;
        if (loop is not null && CanQueue(destination.Span, offsetBytes))
        {
            return ReadQueuedAsync(loop, destination, offsetBytes);
        }

        try
        {
            return new ValueTask<int>(Read(destination.Span, offsetBytes));
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException<int>(e);
        }
    }

    /// <summary><see cref="Write"/> through the thread's ring when it has one (else synchronously); I/O errors fault the task.</summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offsetBytes)
    {
        IoLoop? loop = IoLoop.Current;
        if (loop is not null && !IsReadOnly && CanQueue(source.Span, offsetBytes))
        {
            return WriteQueuedAsync(loop, MemoryMarshal.AsMemory(source), offsetBytes);
        }

        try
        {
            Write(source.Span, offsetBytes);
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException(e);
        }
    }

    /// <summary>Reads exactly the buffer's length or throws EIO naming the short range.</summary>
    public void ReadExactly(Span<byte> destination, long offsetBytes)
    {
        int n = Read(destination, offsetBytes);
        if (n != destination.Length)
        {
            throw new ErrnoIOException(Errno.EIO, Path, $"short read at offset {offsetBytes + n} (wanted {destination.Length} bytes at {offsetBytes}, file ends at {offsetBytes + n})");
        }
    }

    public void Write(ReadOnlySpan<byte> source, long offsetBytes)
    {
        if (IsReadOnly)
        {
            throw StorageErrors.ReadOnly(Path);
        }

        if (_direct && IsDirectAligned(offsetBytes, source.Length))
        {
            if (PosixFile.IsAligned(source, LogicalBlockSize))
            {
                try
                {
                    PosixFile.Write(_fd, source, offsetBytes, Path);
                    return;
                }
                catch (ErrnoIOException e) when (e.Errno == Errno.EINVAL)
                {
                    DisableDirect();
                }
            }
            else
            {
                BounceWrite(source, offsetBytes);
                return;
            }
        }

        PosixFile.Write(BufferedFd(), source, offsetBytes, Path);
    }

    /// <summary>Writes zeros over a range with real writes (the range stays allocated).</summary>
    public void WriteZeros(long offsetBytes, long lengthBytes)
    {
        AlignedMemory zeros = AlignedBufferPool.Shared.Rent((int)Math.Min(lengthBytes, AlignedBufferPool.ChunkBytes));
        try
        {
            Span<byte> span = zeros.GetSpan();
            span.Clear();
            while (lengthBytes > 0)
            {
                int n = (int)Math.Min(lengthBytes, span.Length);
                Write(span[..n], offsetBytes);
                offsetBytes += n;
                lengthBytes -= n;
            }
        }
        finally
        {
            AlignedBufferPool.Shared.Return(zeros);
        }
    }

    /// <summary><see cref="WriteZeros"/> through the thread's ring when it has one (else synchronously); I/O errors fault the task.</summary>
    public ValueTask WriteZerosAsync(long offsetBytes, long lengthBytes)
    {
        IoLoop? loop = IoLoop.Current;
        if (loop is not null && !IsReadOnly)
        {
            return WriteZerosQueuedAsync(offsetBytes, lengthBytes);
        }

        try
        {
            WriteZeros(offsetBytes, lengthBytes);
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException(e);
        }
    }

    public void Flush() => PosixFile.DataSync(_fd, Path);

    /// <summary>
    /// <see cref="Flush"/> for an image's <see cref="IBlockImage.FlushAsync"/>: an I/O failure, or a file already
    /// closed, is reported as a faulted task rather than thrown.
    /// </summary>
    public ValueTask FlushAsync()
    {
        IoLoop? loop = IoLoop.Current;
        if (loop is not null)
        {
            return FlushQueuedAsync(loop);
        }

        try
        {
            Flush();
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ValueTask.FromException(e);
        }
    }

    public void FlushAll() => PosixFile.Sync(_fd, Path);

    public void SetLength(long lengthBytes)
    {
        ForgetDataRun();
        PosixFile.Truncate(_fd, lengthBytes, Path);
        ForgetDataRun();
    }

    /// <summary>Deallocates a range (it then reads as zeros); false if the file system cannot.</summary>
    public bool TryPunchHole(long offsetBytes, long lengthBytes) => TryFallocate(FallocateMode.PunchHole, offsetBytes, lengthBytes);

    /// <summary>Zeroes a range without writing data, keeping it allocated; false if the file system cannot.</summary>
    public bool TryZeroRange(long offsetBytes, long lengthBytes) => TryFallocate(FallocateMode.ZeroRange, offsetBytes, lengthBytes);

    /// <summary><see cref="TryPunchHole"/> through the thread's ring when it has one (else synchronously).</summary>
    public ValueTask<bool> TryPunchHoleAsync(long offsetBytes, long lengthBytes) => TryFallocateAsync(FallocateMode.PunchHole, offsetBytes, lengthBytes);

    /// <summary><see cref="TryZeroRange"/> through the thread's ring when it has one (else synchronously).</summary>
    public ValueTask<bool> TryZeroRangeAsync(long offsetBytes, long lengthBytes) => TryFallocateAsync(FallocateMode.ZeroRange, offsetBytes, lengthBytes);

    /// <summary>Allocates space for a range without changing the file size; false if the file system cannot.</summary>
    public bool TryPreallocate(long offsetBytes, long lengthBytes) => PosixFile.TryFallocate(_fd, FallocateMode.AllocateKeepSize, offsetBytes, lengthBytes) == 0;

    /// <summary>SEEK_DATA/SEEK_HOLE; returns -1 when there is no further data (ENXIO) or the file system cannot say.</summary>
    public long Seek(long offsetBytes, bool data)
    {
        long r = PosixFile.SeekDataOrHole(_fd, offsetBytes, data, out int errno);
        if (r >= 0)
        {
            return r;
        }

        return errno is Errno.ENXIO or Errno.EINVAL or Errno.EOPNOTSUPP ? -1 : throw new ErrnoIOException(errno, Path, "lseek");
    }

    /// <summary>
    /// The data run holding <paramref name="offsetBytes"/> or the next one after it: its start (-1 when no data follows)
    /// and its end (<see cref="long.MaxValue"/> when the file system cannot say where the next hole is). A file system
    /// that cannot answer SEEK_DATA at all gets data from the offset on: a hole is reported only when the kernel said
    /// so, since a reader may skip it. Answers from the last run found when it holds the offset.
    /// </summary>
    public (long Start, long End) FindData(long offsetBytes)
    {
        long generation;
        lock (_dataRunLock)
        {
            if (offsetBytes >= _dataRunStart && offsetBytes < _dataRunEnd)
            {
                return (offsetBytes, _dataRunEnd);
            }

            generation = _holeGeneration;
        }

        long start = PosixFile.SeekDataOrHole(_fd, offsetBytes, data: true, out int errno);
        if (start < 0)
        {
            return errno switch
            {
                Errno.ENXIO => (-1, -1),
                Errno.EINVAL or Errno.EOPNOTSUPP => (offsetBytes, long.MaxValue),
                _ => throw new ErrnoIOException(errno, Path, "lseek"),
            };
        }

        long hole = Seek(start, data: false);
        long end = hole < 0 ? long.MaxValue : hole;
        lock (_dataRunLock)
        {
            if (_holeGeneration == generation)
            {
                _dataRunStart = start;
                _dataRunEnd = end;
            }
        }

        return (start, end);
    }

    /// <summary>Forgets the remembered data run: called around every call that can make a hole.</summary>
    private void ForgetDataRun()
    {
        lock (_dataRunLock)
        {
            _holeGeneration++;
            _dataRunStart = _dataRunEnd = 0;
        }
    }

    public void Dispose()
    {
        _bufferedFd?.Dispose();
        _fd.Dispose();
    }

    /// <summary>
    /// The descriptor a queued request uses: the O_DIRECT one while direct I/O works, else the buffered one (after
    /// <see cref="DisableDirect"/>, requests of any alignment are queued, and the O_DIRECT descriptor would refuse them).
    /// </summary>
    private SafeFdHandle QueuedFd() => _direct ? _fd : BufferedFd();

    /// <summary>Whether the ring can take the request as it is (O_DIRECT needs the buffer, offset and length aligned; else bounced, synchronously).</summary>
    private bool CanQueue(ReadOnlySpan<byte> buffer, long offsetBytes) =>
        !_direct || (IsDirectAligned(offsetBytes, buffer.Length) && PosixFile.IsAligned(buffer, LogicalBlockSize));

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder<>))]
    private async ValueTask<int> ReadQueuedAsync(IoLoop loop, Memory<byte> destination, long offsetBytes)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = await loop.StartAsync(IoUringOp.Read, QueuedFd(), destination[total..], (ulong)(offsetBytes + total)).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            if (n < 0)
            {
                if (n == -Errno.EINTR || n == -Errno.EAGAIN)
                {
                    continue;
                }

                if (n == -Errno.EINVAL && _direct)
                {
                    DisableDirect();
                    return total + Read(destination.Span[total..], offsetBytes + total);
                }

                throw new ErrnoIOException(-n, Path, $"read of {destination.Length - total} bytes at offset {offsetBytes + total}");
            }

            total += n;
        }

        return total;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteQueuedAsync(IoLoop loop, Memory<byte> source, long offsetBytes)
    {
        int total = 0;
        while (total < source.Length)
        {
            int n = await loop.StartAsync(IoUringOp.Write, QueuedFd(), source[total..], (ulong)(offsetBytes + total)).ConfigureAwait(false);
            if (n < 0)
            {
                if (n == -Errno.EINTR || n == -Errno.EAGAIN)
                {
                    continue;
                }

                if (n == -Errno.EINVAL && _direct)
                {
                    DisableDirect();
                    Write(source.Span[total..], offsetBytes + total);
                    return;
                }

                throw new ErrnoIOException(-n, Path, $"write of {source.Length - total} bytes at offset {offsetBytes + total}");
            }

            if (n == 0)
            {
                throw new ErrnoIOException(Errno.EIO, Path, $"write at offset {offsetBytes + total} made no progress");
            }

            total += n;
        }
    }

    private ValueTask<bool> TryFallocateAsync(FallocateMode mode, long offsetBytes, long lengthBytes)
    {
        IoLoop? loop = IoLoop.Current;
        if (loop is not null)
        {
            return FallocateQueuedAsync(loop, mode, offsetBytes, lengthBytes);
        }

        try
        {
            return new ValueTask<bool>(TryFallocate(mode, offsetBytes, lengthBytes));
        }
        catch (ObjectDisposedException e)
        {
            return ValueTask.FromException<bool>(e);
        }
    }

    private bool TryFallocate(FallocateMode mode, long offsetBytes, long lengthBytes)
    {
        ForgetDataRun();
        try
        {
            return PosixFile.TryFallocate(_fd, mode, offsetBytes, lengthBytes) == 0;
        }
        finally
        {
            ForgetDataRun();
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder<>))]
    private async ValueTask<bool> FallocateQueuedAsync(IoLoop loop, FallocateMode mode, long offsetBytes, long lengthBytes)
    {
        // As the synchronous call: any errno means "not done" (EOPNOTSUPP is the usual one), and the caller falls back.
        // The ring's fallocate needs Linux 5.6, as do its reads, which the engine's self-test proved.
        ForgetDataRun();
        try
        {
            return await loop.StartFallocateAsync(_fd, mode, offsetBytes, lengthBytes).ConfigureAwait(false) == 0;
        }
        finally
        {
            ForgetDataRun();
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteZerosQueuedAsync(long offsetBytes, long lengthBytes)
    {
        AlignedMemory zeros = AlignedBufferPool.Shared.Rent((int)Math.Min(lengthBytes, AlignedBufferPool.ChunkBytes));
        try
        {
            zeros.GetSpan().Clear();
            Memory<byte> memory = zeros.Memory;
            while (lengthBytes > 0)
            {
                int n = (int)Math.Min(lengthBytes, memory.Length);

                // One chunk at a time: they all write the same buffer, which goes back to the pool only when none is in the kernel.
                await WriteAsync(memory[..n], offsetBytes).ConfigureAwait(false);
                offsetBytes += n;
                lengthBytes -= n;
            }
        }
        finally
        {
            AlignedBufferPool.Shared.Return(zeros);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask FlushQueuedAsync(IoLoop loop)
    {
        int n = await loop.StartAsync(IoUringOp.Fsync, _fd, Memory<byte>.Empty, 0, IoUring.FsyncDataSync).ConfigureAwait(false);
        if (n < 0)
        {
            throw new ErrnoIOException(-n, Path, "fdatasync");
        }
    }

    private bool IsDirectAligned(long offsetBytes, int length) =>
        (offsetBytes & (LogicalBlockSize - 1)) == 0 && (length & (LogicalBlockSize - 1)) == 0;

    private int BounceRead(Span<byte> destination, long offsetBytes)
    {
        AlignedMemory bounce = AlignedBufferPool.Shared.Rent(Math.Min(destination.Length, AlignedBufferPool.ChunkBytes));
        try
        {
            Span<byte> span = bounce.GetSpan();
            int total = 0;
            while (total < destination.Length)
            {
                int want = Math.Min(destination.Length - total, span.Length);
                int n = Read(span[..want], offsetBytes + total);
                span[..n].CopyTo(destination[total..]);
                total += n;
                if (n < want)
                {
                    break;
                }
            }

            return total;
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
        }
    }

    private void BounceWrite(ReadOnlySpan<byte> source, long offsetBytes)
    {
        AlignedMemory bounce = AlignedBufferPool.Shared.Rent(Math.Min(source.Length, AlignedBufferPool.ChunkBytes));
        try
        {
            Span<byte> span = bounce.GetSpan();
            int total = 0;
            while (total < source.Length)
            {
                int n = Math.Min(source.Length - total, span.Length);
                source.Slice(total, n).CopyTo(span);
                Write(span[..n], offsetBytes + total);
                total += n;
            }
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
        }
    }

    private void DisableDirect()
    {
        // An aligned O_DIRECT request was refused (e.g. a 4 KiB-sector file system): stay buffered from now on.
        _direct = false;
    }

    private SafeFdHandle BufferedFd()
    {
        if (!_openedDirect)
        {
            return _fd;
        }

        SafeFdHandle? buffered = Volatile.Read(ref _bufferedFd);
        if (buffered is not null)
        {
            return buffered;
        }

        lock (_bufferedLock)
        {
            _bufferedFd ??= PosixFile.Open(Path, _baseFlags);
            return _bufferedFd;
        }
    }
}
