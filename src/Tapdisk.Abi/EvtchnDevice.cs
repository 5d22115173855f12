using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// <c>/dev/xen/evtchn</c>, opened non-blocking: bind/unbind/notify ioctls, read() of pending ports, write() to unmask
/// (control-xen.md Part II 2). Ports are per fd.
/// </summary>
public sealed unsafe class EvtchnDevice : IDisposable
{
    public const string DefaultPath = "/dev/xen/evtchn";

    private readonly SafeFdHandle _fd;

    private EvtchnDevice(SafeFdHandle fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    public string Path { get; }

    public SafeFdHandle Handle => _fd;

    public static EvtchnDevice Open(string path = DefaultPath) =>
        new(PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.NonBlocking), path);

    /// <summary>IOCTL_EVTCHN_BIND_INTERDOMAIN; returns the local port. EINVAL: not an unbound port offered to us; ESRCH: no such domain.</summary>
    public uint BindInterdomain(uint remoteDomain, uint remotePort)
    {
        var arg = new Interop.Evtchn.BindInterdomain { RemoteDomain = remoteDomain, RemotePort = remotePort };
        int port = Interop.Libc.Ioctl(_fd, Interop.Evtchn.IOCTL_EVTCHN_BIND_INTERDOMAIN, &arg);
        return port >= 0 ? (uint)port : throw new ErrnoIOException(Marshal.GetLastPInvokeError(), Path, "IOCTL_EVTCHN_BIND_INTERDOMAIN");
    }

    /// <summary>IOCTL_EVTCHN_UNBIND; returns 0 or the errno (ENOTCONN for a port not bound through this fd).</summary>
    public int Unbind(uint port)
    {
        var arg = new Interop.Evtchn.Unbind { Port = port };
        return Interop.Libc.Ioctl(_fd, Interop.Evtchn.IOCTL_EVTCHN_UNBIND, &arg) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>IOCTL_EVTCHN_NOTIFY: kicks the remote end; returns 0 or the errno.</summary>
    public int Notify(uint port)
    {
        var arg = new Interop.Evtchn.Notify { Port = port };
        return Interop.Libc.Ioctl(_fd, Interop.Evtchn.IOCTL_EVTCHN_NOTIFY, &arg) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>IOCTL_EVTCHN_RESET: clears the queue and its overflow flag (after EFBIG every ring must be rescanned).</summary>
    public int Reset() => Interop.Libc.Ioctl(_fd, Interop.Evtchn.IOCTL_EVTCHN_RESET, null) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>read(2) of pending ports (each is then masked in the kernel); returns how many, 0 when none (EAGAIN), or -errno.</summary>
    public int ReadPending(Span<uint> ports)
    {
        fixed (uint* p = ports)
        {
            while (true)
            {
                nint n = Interop.Libc.Read(_fd, (byte*)p, (nuint)(ports.Length * sizeof(uint)));
                if (n >= 0)
                {
                    return (int)(n / sizeof(uint));
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EAGAIN)
                {
                    return 0;
                }

                if (errno != Errno.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary>write(2) of one port: re-enables delivery; an event that fired while masked is then delivered.</summary>
    public int Unmask(uint port)
    {
        while (true)
        {
            if (Interop.Libc.Write(_fd, (byte*)&port, sizeof(uint)) >= 0)
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

    public void Dispose() => _fd.Dispose();
}
