using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// <c>/dev/xen/gntdev</c>: maps a frontend's granted pages into this process and copies to and from grants
/// (control-xen.md Part II 1). Safe to use from several threads: every call is one ioctl on the same fd.
/// </summary>
public sealed unsafe class GntdevDevice : IDisposable
{
    public const string DefaultPath = "/dev/xen/gntdev";
    public const int PageSize = 4096;

    private readonly SafeFdHandle _fd;

    private GntdevDevice(SafeFdHandle fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    public string Path { get; }

    public static GntdevDevice Open(string path = DefaultPath) =>
        new(PosixFile.Open(path, OpenFlags.ReadWrite), path);

    /// <summary>
    /// Maps <paramref name="refs"/> of <paramref name="domid"/> as one contiguous range: IOCTL_GNTDEV_MAP_GRANT_REF, then mmap
    /// at the returned index. A bad ref fails the mmap (EINVAL, all or nothing); the reservation is then released.
    /// </summary>
    public MappedRegion MapGrantRefs(uint domid, ReadOnlySpan<uint> refs, bool writable)
    {
        if (refs.IsEmpty || refs.Length > 512)
        {
            throw new ErrnoIOException(Errno.EINVAL, Path, "IOCTL_GNTDEV_MAP_GRANT_REF");
        }

        int argBytes = sizeof(Interop.Gntdev.MapGrantRef) + ((refs.Length - 1) * sizeof(Interop.Gntdev.GrantRef));
        byte* arg = stackalloc byte[argBytes];
        var header = (Interop.Gntdev.MapGrantRef*)arg;
        header->Count = (uint)refs.Length;
        header->Pad = 0;
        header->Index = 0;
        Interop.Gntdev.GrantRef* entries = &header->Refs;
        for (int i = 0; i < refs.Length; i++)
        {
            entries[i].Domid = domid;
            entries[i].Ref = refs[i];
        }

        CheckIoctl(Interop.Libc.Ioctl(_fd, Interop.Gntdev.IOCTL_GNTDEV_MAP_GRANT_REF, arg), "IOCTL_GNTDEV_MAP_GRANT_REF");
        ulong index = header->Index;
        int length = refs.Length * PageSize;
        int protection = Interop.Libc.PROT_READ | (writable ? Interop.Libc.PROT_WRITE : 0);
        void* address = Interop.Libc.Mmap(null, (nuint)length, protection, Interop.Libc.MAP_SHARED, _fd.Fd, (long)index);
        if (address == (void*)-1)
        {
            int errno = Marshal.GetLastPInvokeError();
            Unmap(index, (uint)refs.Length);
            throw new ErrnoIOException(errno, Path, "mmap of granted pages");
        }

        return new Mapping(this, address, length, index, (uint)refs.Length);
    }

    /// <summary>IOCTL_GNTDEV_GRANT_COPY over <paramref name="segments"/>; returns 0 or the errno. Per-segment GNTST codes land in Status.</summary>
    public int GrantCopy(Span<GrantCopySegment> segments)
    {
        if (segments.IsEmpty)
        {
            return 0;
        }

        fixed (GrantCopySegment* p = segments)
        {
            var arg = new Interop.Gntdev.GrantCopy { Count = (uint)segments.Length, Segments = (ulong)p };
            while (true)
            {
                if (Interop.Libc.Ioctl(_fd, Interop.Gntdev.IOCTL_GNTDEV_GRANT_COPY, &arg) == 0)
                {
                    return 0;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    return errno;
                }
            }
        }
    }

    /// <summary>IOCTL_GNTDEV_SET_MAX_GRANTS; returns the errno (ENOTTY on kernels that dropped it, which callers treat as success).</summary>
    public int SetMaxGrants(uint count)
    {
        var arg = new Interop.Gntdev.SetMaxGrants { Count = count };
        return Interop.Libc.Ioctl(_fd, Interop.Gntdev.IOCTL_GNTDEV_SET_MAX_GRANTS, &arg) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    public void Dispose() => _fd.Dispose();

    private void Unmap(ulong index, uint count)
    {
        var arg = new Interop.Gntdev.UnmapGrantRef { Index = index, Count = count };
        if (_fd.IsClosed)
        {
            return; // The reservations died with the fd.
        }

        // ENOENT would mean the reservation is already gone; nothing else can be done about a failure at teardown.
        _ = Interop.Libc.Ioctl(_fd, Interop.Gntdev.IOCTL_GNTDEV_UNMAP_GRANT_REF, &arg);
    }

    private void CheckIoctl(int result, string what)
    {
        if (result != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), Path, what);
        }
    }

    /// <summary>A mapping whose reservation is released after munmap (libxengnttab's order; control-xen.md 1.4).</summary>
    private sealed class Mapping : MappedRegion
    {
        private readonly GntdevDevice _device;
        private readonly ulong _index;
        private readonly uint _count;

        public Mapping(GntdevDevice device, void* address, int length, ulong index, uint count)
            : base(address, length)
        {
            _device = device;
            _index = index;
            _count = count;
        }

        protected override void OnUnmapped()
        {
            try
            {
                _device.Unmap(_index, _count);
            }
            catch (ObjectDisposedException)
            {
                // Teardown race with the device's Dispose: closing the fd already released the reservation.
            }
        }
    }
}
