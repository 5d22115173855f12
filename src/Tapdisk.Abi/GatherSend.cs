using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// One sendmsg(2) of two buffers: a reply header and its payload leave in a single send, so the peer is woken once
/// per reply rather than once for the header and again for the data. The BCL's gather send takes managed arrays
/// only; payloads here live in native aligned memory.
/// </summary>
public static unsafe class GatherSend
{
    /// <summary>
    /// Sends as much of <paramref name="first"/> then <paramref name="second"/> as the socket takes (blocking unless
    /// the descriptor is non-blocking, SIGPIPE suppressed). Returns the byte count, or -1 with <paramref name="errno"/>
    /// set (EAGAIN on a blocking socket: its SO_SNDTIMEO ran out with nothing sent).
    /// </summary>
    public static nint Send(SafeHandle socket, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, out int errno)
    {
        ArgumentNullException.ThrowIfNull(socket);
        errno = 0;
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* a = first)
            fixed (byte* b = second)
            {
                Interop.Libc.IoVec* iov = stackalloc Interop.Libc.IoVec[2];
                iov[0] = new Interop.Libc.IoVec { Base = a, Length = (nuint)first.Length };
                iov[1] = new Interop.Libc.IoVec { Base = b, Length = (nuint)second.Length };
                var header = new Interop.Libc.MsgHdr { Iov = iov, IovLength = 2 };
                nint n = Interop.Libc.SendMsg(socket.DangerousGetHandle(), &header, Interop.Libc.MSG_NOSIGNAL);
                if (n < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                }

                return n;
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
}
