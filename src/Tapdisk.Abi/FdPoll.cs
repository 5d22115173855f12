using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>poll(2) over two descriptors, for event loops that wait on a device and a wake-up eventfd.</summary>
public static unsafe class FdPoll
{
    /// <summary>POLLIN, for a poll made elsewhere (an io_uring POLL_ADD).</summary>
    public const uint Readable = (ushort)Interop.Libc.POLLIN;

    /// <summary>Waits until either is readable or the timeout passes; bit 0 = first readable, bit 1 = second, 0 = timeout or EINTR.</summary>
    public static int WaitReadable(SafeFdHandle first, SafeFdHandle second, int timeoutMilliseconds)
    {
        bool firstRef = false;
        bool secondRef = false;
        try
        {
            first.DangerousAddRef(ref firstRef);
            second.DangerousAddRef(ref secondRef);
            Interop.Libc.PollFd* fds = stackalloc Interop.Libc.PollFd[2];
            fds[0] = new Interop.Libc.PollFd { Fd = first.Fd, Events = Interop.Libc.POLLIN };
            fds[1] = new Interop.Libc.PollFd { Fd = second.Fd, Events = Interop.Libc.POLLIN };
            int n = Interop.Libc.Poll(fds, 2, timeoutMilliseconds);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno == Errno.EINTR ? 0 : throw new ErrnoIOException(errno, null, "poll");
            }

            const short Ready = Interop.Libc.POLLIN | Interop.Libc.POLLERR | Interop.Libc.POLLHUP;
            return ((fds[0].REvents & Ready) != 0 ? 1 : 0) | ((fds[1].REvents & Ready) != 0 ? 2 : 0);
        }
        finally
        {
            if (secondRef)
            {
                second.DangerousRelease();
            }

            if (firstRef)
            {
                first.DangerousRelease();
            }
        }
    }
}
