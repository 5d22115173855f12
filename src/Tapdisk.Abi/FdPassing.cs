using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// File descriptors passed over UNIX sockets (SCM_RIGHTS), as blktap's fd receivers take them: one message of
/// up to 16 KiB of text with one descriptor. The BCL's sockets have no way to carry a descriptor.
/// </summary>
public static unsafe class FdPassing
{
    // CMSG_SPACE(sizeof(int)) and CMSG_LEN(sizeof(int)) on x86_64 (probed in libc-socket.probe).
    private const int ControlSpace = 24;
    private const int ControlLength = 20;

    /// <summary>
    /// Receives one message without blocking. Returns the byte count (0: the peer closed), or -1 with
    /// <paramref name="errno"/> set (EAGAIN: nothing yet). <paramref name="fd"/> is the passed descriptor
    /// (close-on-exec), or -1 if the message carried none; extra descriptors are closed, never leaked.
    /// </summary>
    public static int TryReceive(SafeHandle socket, Span<byte> message, out int fd, out int errno)
    {
        ArgumentNullException.ThrowIfNull(socket);
        fd = -1;
        errno = 0;
        byte* control = stackalloc byte[ControlSpace * 4];
        new Span<byte>(control, ControlSpace * 4).Clear();
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* data = message)
            {
                var iov = new Interop.Libc.IoVec { Base = data, Length = (nuint)message.Length };
                var header = new Interop.Libc.MsgHdr
                {
                    Iov = &iov,
                    IovLength = 1,
                    Control = control,
                    ControlLength = ControlSpace * 4,
                };
                nint n = Interop.Libc.RecvMsg(socket.DangerousGetHandle(), &header, Interop.Libc.MSG_DONTWAIT | Interop.Libc.MSG_CMSG_CLOEXEC);
                if (n < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    return -1;
                }

                fd = TakeDescriptors(control, (int)header.ControlLength);
                return (int)n;
            }
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>Sends <paramref name="message"/> (at least one byte) with <paramref name="fd"/> attached.</summary>
    public static void Send(SafeHandle socket, ReadOnlySpan<byte> message, SafeHandle fd)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentOutOfRangeException.ThrowIfZero(message.Length);
        byte* control = stackalloc byte[ControlSpace];
        new Span<byte>(control, ControlSpace).Clear();
        bool socketAdded = false, fdAdded = false;
        try
        {
            socket.DangerousAddRef(ref socketAdded);
            fd.DangerousAddRef(ref fdAdded);
            var cmsg = (Interop.Libc.CmsgHdr*)control;
            cmsg->Length = ControlLength;
            cmsg->Level = Interop.Libc.SOL_SOCKET;
            cmsg->Type = Interop.Libc.SCM_RIGHTS;
            *(int*)(control + sizeof(Interop.Libc.CmsgHdr)) = (int)fd.DangerousGetHandle();
            fixed (byte* data = message)
            {
                var iov = new Interop.Libc.IoVec { Base = data, Length = (nuint)message.Length };
                var header = new Interop.Libc.MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = ControlSpace };
                if (Interop.Libc.SendMsg(socket.DangerousGetHandle(), &header, Interop.Libc.MSG_NOSIGNAL) < 0)
                {
                    throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, "sendmsg");
                }
            }
        }
        finally
        {
            if (fdAdded)
            {
                fd.DangerousRelease();
            }

            if (socketAdded)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>Returns the first SCM_RIGHTS descriptor and closes any others (a peer may send several).</summary>
    private static int TakeDescriptors(byte* control, int length)
    {
        int first = -1;
        int offset = 0;
        while (offset + sizeof(Interop.Libc.CmsgHdr) <= length)
        {
            var cmsg = (Interop.Libc.CmsgHdr*)(control + offset);
            int cmsgLength = (int)cmsg->Length;
            if (cmsgLength < sizeof(Interop.Libc.CmsgHdr) || offset + cmsgLength > length)
            {
                break;
            }

            if (cmsg->Level == Interop.Libc.SOL_SOCKET && cmsg->Type == Interop.Libc.SCM_RIGHTS)
            {
                int count = (cmsgLength - sizeof(Interop.Libc.CmsgHdr)) / sizeof(int);
                int* fds = (int*)(control + offset + sizeof(Interop.Libc.CmsgHdr));
                for (int i = 0; i < count; i++)
                {
                    if (first < 0)
                    {
                        first = fds[i];
                    }
                    else
                    {
                        _ = Interop.Libc.Close(fds[i]);
                    }
                }
            }

            // CMSG_NXTHDR: advance by the length rounded up to the 8-byte alignment of cmsghdr.
            offset += (cmsgLength + 7) & ~7;
        }

        return first;
    }
}
