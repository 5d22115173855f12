using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>Errno-checked file syscalls over <see cref="SafeFdHandle"/>; every failure throws <see cref="ErrnoIOException"/>.</summary>
public static unsafe class PosixFile
{
    /// <summary>Opens a file; returns the errno instead of throwing so callers can retry without O_DIRECT.</summary>
    public static int TryOpen(string path, OpenFlags flags, int mode, out SafeFdHandle handle)
    {
        int fd;
        do
        {
            fd = Interop.Libc.Open(path, (int)(flags | OpenFlags.CloseOnExec | OpenFlags.LargeFile), mode);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);

        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle = new SafeFdHandle();
            return errno;
        }

        handle = new SafeFdHandle(fd, ownsHandle: true);
        return 0;
    }

    public static SafeFdHandle Open(string path, OpenFlags flags, int mode = 0x1A4 /* 0644 */)
    {
        int errno = TryOpen(path, flags, mode, out SafeFdHandle handle);
        return errno == 0 ? handle : throw new ErrnoIOException(errno, path, "open");
    }

    /// <summary>pread(2) until the buffer is full or EOF; returns the bytes read.</summary>
    public static int Read(SafeFdHandle fd, Span<byte> buffer, long offset, string? path = null)
    {
        int total = 0;
        fixed (byte* p = buffer)
        {
            while (total < buffer.Length)
            {
                nint n = Interop.Libc.Pread(fd, p + total, (nuint)(buffer.Length - total), offset + total);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }

                    throw new ErrnoIOException(errno, path, "read");
                }

                if (n == 0)
                {
                    break;
                }

                total += (int)n;
            }
        }

        return total;
    }

    /// <summary>pwrite(2) the whole buffer.</summary>
    public static void Write(SafeFdHandle fd, ReadOnlySpan<byte> buffer, long offset, string? path = null)
    {
        int total = 0;
        fixed (byte* p = buffer)
        {
            while (total < buffer.Length)
            {
                nint n = Interop.Libc.Pwrite(fd, p + total, (nuint)(buffer.Length - total), offset + total);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }

                    throw new ErrnoIOException(errno, path, "write");
                }

                if (n == 0)
                {
                    throw new ErrnoIOException(Errno.EIO, path, "write");
                }

                total += (int)n;
            }
        }
    }

    /// <summary>write(2) the whole buffer at the descriptor's current offset (stdout, pipes, O_APPEND files).</summary>
    public static void WriteAll(SafeFdHandle fd, ReadOnlySpan<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int total = 0;
            while (total < buffer.Length)
            {
                nint n = Interop.Libc.Write(fd, p + total, (nuint)(buffer.Length - total));
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }

                    throw new ErrnoIOException(errno, null, "write");
                }

                total += (int)n;
            }
        }
    }

    /// <summary>A non-owning handle for an inherited descriptor such as 0, 1 or 2.</summary>
    public static SafeFdHandle Borrow(int fd) => new(fd, ownsHandle: false);

    public static void DataSync(SafeFdHandle fd, string? path = null)
    {
        if (Interop.Libc.Fdatasync(fd) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "fdatasync");
        }
    }

    public static void Sync(SafeFdHandle fd, string? path = null)
    {
        if (Interop.Libc.Fsync(fd) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "fsync");
        }
    }

    public static void Truncate(SafeFdHandle fd, long length, string? path = null)
    {
        if (Interop.Libc.Ftruncate(fd, length) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "ftruncate");
        }
    }

    /// <summary>fallocate(2); returns 0 or the errno (EOPNOTSUPP is an expected answer, not a failure).</summary>
    public static int TryFallocate(SafeFdHandle fd, FallocateMode mode, long offset, long length) =>
        Interop.Libc.Fallocate(fd, FallocateFlags(mode), offset, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>The mode argument of fallocate(2) for <paramref name="mode"/> (also what an io_uring fallocate carries).</summary>
    public static int FallocateFlags(FallocateMode mode) => mode switch
    {
        FallocateMode.Allocate => 0,
        FallocateMode.AllocateKeepSize => Interop.Libc.FALLOC_FL_KEEP_SIZE,
        FallocateMode.PunchHole => Interop.Libc.FALLOC_FL_PUNCH_HOLE | Interop.Libc.FALLOC_FL_KEEP_SIZE,
        FallocateMode.ZeroRange => Interop.Libc.FALLOC_FL_ZERO_RANGE | Interop.Libc.FALLOC_FL_KEEP_SIZE,
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    /// <summary>lseek(2) with SEEK_DATA/SEEK_HOLE; returns -1 with ENXIO past the last data, or throws.</summary>
    public static long SeekDataOrHole(SafeFdHandle fd, long offset, bool data, out int errno)
    {
        long r = Interop.Libc.Lseek(fd, offset, data ? Interop.Libc.SEEK_DATA : Interop.Libc.SEEK_HOLE);
        errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        return r;
    }

    public static FileStatus Stat(SafeFdHandle fd, string? path = null)
    {
        Interop.Libc.Stat st;
        if (Interop.Libc.Fstat(fd, &st) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "fstat");
        }

        uint type = st.Mode & Interop.Libc.S_IFMT;
        return new FileStatus(st.Size, type == Interop.Libc.S_IFBLK, type == Interop.Libc.S_IFREG, st.Blocks * 512, st.Dev, st.Ino)
        {
            ModifiedNs = (st.MtimeSec * 1_000_000_000) + st.MtimeNsec,
            ChangedNs = (st.CtimeSec * 1_000_000_000) + st.CtimeNsec,
            OwnerUid = st.Uid,
            Permissions = st.Mode & 0xFFF,
        };
    }

    /// <summary>ioctl(BLKGETSIZE64): the size of a block device in bytes.</summary>
    public static long BlockDeviceSize(SafeFdHandle fd, string? path = null)
    {
        ulong size;
        if (Interop.Libc.Ioctl(fd, Interop.Libc.BLKGETSIZE64, &size) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "ioctl(BLKGETSIZE64)");
        }

        return (long)size;
    }

    /// <summary>ioctl(BLKSSZGET): the logical sector size of a block device.</summary>
    public static int LogicalSectorSize(SafeFdHandle fd, string? path = null)
    {
        int size;
        if (Interop.Libc.Ioctl(fd, Interop.Libc.BLKSSZGET, &size) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "ioctl(BLKSSZGET)");
        }

        return size;
    }

    /// <summary>
    /// fgetxattr(2) into <paramref name="value"/>; returns the attribute's length, or -1 if the file has no such
    /// attribute (ENODATA) or its file system keeps none (ENOTSUP). Other errors, including ERANGE for an attribute
    /// longer than the buffer, throw.
    /// </summary>
    public static int GetXattr(SafeFdHandle fd, string name, Span<byte> value, string? path = null)
    {
        fixed (byte* p = value)
        {
            while (true)
            {
                nint n = Interop.Libc.Fgetxattr(fd, name, p, (nuint)value.Length);
                if (n >= 0)
                {
                    return (int)n;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                return errno is Errno.ENODATA or Errno.EOPNOTSUPP ? -1 : throw new ErrnoIOException(errno, path, $"getxattr {name}");
            }
        }
    }

    /// <summary>fsetxattr(2), creating or replacing the attribute; a file system without user attributes is named as such.</summary>
    public static void SetXattr(SafeFdHandle fd, string name, ReadOnlySpan<byte> value, string? path = null)
    {
        fixed (byte* p = value)
        {
            while (Interop.Libc.Fsetxattr(fd, name, p, (nuint)value.Length, 0) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                throw new ErrnoIOException(errno, path, errno == Errno.EOPNOTSUPP
                    ? $"setxattr {name} (the file system does not support user extended attributes)"
                    : $"setxattr {name}");
            }
        }
    }

    /// <summary>flock(2) without blocking; returns 0 or the errno (EWOULDBLOCK when someone else holds it).</summary>
    public static int TryLock(SafeFdHandle fd, bool exclusive) =>
        Interop.Libc.Flock(fd, (exclusive ? Interop.Libc.LOCK_EX : Interop.Libc.LOCK_SH) | Interop.Libc.LOCK_NB) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>True if the span's first byte sits on an <paramref name="alignment"/>-byte boundary (a power of two).</summary>
    public static bool IsAligned(ReadOnlySpan<byte> span, int alignment)
    {
        fixed (byte* p = span)
        {
            return ((nuint)p & (nuint)(alignment - 1)) == 0;
        }
    }
}

/// <summary>What <see cref="PosixFile.TryFallocate"/> asks of fallocate(2).</summary>
public enum FallocateMode
{
    Allocate,
    AllocateKeepSize,
    PunchHole,
    ZeroRange,
}
