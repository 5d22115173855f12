using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// A memfd(2) whose pages can be mapped several times, in any order, into one contiguous range: real shared memory,
/// as gntdev gives a backend. Used by the fake grant device and test frontends.
/// </summary>
public sealed unsafe class SharedMemoryFile : IDisposable
{
    public const int PageSize = 4096;

    private readonly SafeFdHandle _fd;

    public SharedMemoryFile(string name, int pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pages);
        int fd = Interop.Libc.MemfdCreate(name, Interop.Libc.MFD_CLOEXEC);
        if (fd < 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), name, "memfd_create");
        }

        _fd = new SafeFdHandle(fd, ownsHandle: true);
        PosixFile.Truncate(_fd, (long)pages * PageSize, name);
        Pages = pages;
    }

    public int Pages { get; }

    /// <summary>Maps the given pages of the file, in that order, as one contiguous range; <paramref name="onUnmapped"/> runs after munmap.</summary>
    public MappedRegion MapPages(ReadOnlySpan<int> pageIndexes, bool writable, Action? onUnmapped = null)
    {
        if (pageIndexes.IsEmpty)
        {
            throw new ArgumentException("no pages", nameof(pageIndexes));
        }

        int length = pageIndexes.Length * PageSize;

        // Reserve the whole range first, then place each page over it with MAP_FIXED.
        byte* reserved = (byte*)Interop.Libc.Mmap(null, (nuint)length, Interop.Libc.PROT_NONE, Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS, -1, 0);
        if (reserved == (byte*)-1)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, "mmap reserve");
        }

        int protection = Interop.Libc.PROT_READ | (writable ? Interop.Libc.PROT_WRITE : 0);
        for (int i = 0; i < pageIndexes.Length; i++)
        {
            int page = pageIndexes[i];
            if ((uint)page >= (uint)Pages)
            {
                _ = Interop.Libc.Munmap(reserved, (nuint)length);
                throw new ArgumentOutOfRangeException(nameof(pageIndexes), page, $"page outside the {Pages}-page file");
            }

            void* placed = Interop.Libc.Mmap(reserved + ((long)i * PageSize), PageSize, protection, Interop.Libc.MAP_SHARED | Interop.Libc.MAP_FIXED, _fd.Fd, (long)page * PageSize);
            if (placed == (void*)-1)
            {
                int errno = Marshal.GetLastPInvokeError();
                _ = Interop.Libc.Munmap(reserved, (nuint)length);
                throw new ErrnoIOException(errno, null, "mmap MAP_FIXED");
            }
        }

        return new MappedRegion(reserved, length, onUnmapped);
    }

    public void Dispose() => _fd.Dispose();
}
