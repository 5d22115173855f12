using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// An eventfd(2): lets another thread wake a loop that sleeps in poll(2) (non-blocking), or in io_uring (blocking:
/// io_uring answers a read of an O_NONBLOCK descriptor with EAGAIN at once instead of waiting for it to be signalled).
/// </summary>
public sealed unsafe class EventFd : IDisposable
{
    private readonly SafeFdHandle _fd;

    public EventFd(bool nonBlocking = true)
    {
        int fd = Interop.Libc.Eventfd(0, (nonBlocking ? Interop.Libc.EFD_NONBLOCK : 0) | Interop.Libc.EFD_CLOEXEC);
        if (fd < 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, "eventfd");
        }

        _fd = new SafeFdHandle(fd, ownsHandle: true);
    }

    public SafeFdHandle Handle => _fd;

    /// <summary>Adds 1 to the counter; the poller wakes. Safe from any thread.</summary>
    public void Signal()
    {
        ulong one = 1;
        nint n;
        do
        {
            n = Interop.Libc.Write(_fd, (byte*)&one, sizeof(ulong));
        }
        while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);

        // EAGAIN means the counter is already at its maximum: the poller is awake anyway.
    }

    /// <summary>Resets the counter to zero.</summary>
    public void Drain()
    {
        ulong value;
        nint n;
        do
        {
            n = Interop.Libc.Read(_fd, (byte*)&value, sizeof(ulong));
        }
        while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
    }

    public void Dispose() => _fd.Dispose();
}
