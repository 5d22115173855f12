using System.Net.Sockets;

namespace Tapdisk.Control;

/// <summary>
/// One request per connection, as blktap's tap-ctl does: connect to ctl&lt;pid&gt;, write 544 bytes (plus any
/// trailer) in one write, read the reply. Transport failures carry the errno tap-ctl exits with (control-xen.md 2.1).
/// </summary>
public sealed class ControlClient : IDisposable
{
    private const int ENOENT = 2;
    private const int EIO = 5;
    private const int ETIMEDOUT = 110;
    private const int ECONNREFUSED = 111;

    private readonly Socket _socket;
    private readonly DateTime _deadline;

    private ControlClient(Socket socket, TimeSpan? timeout)
    {
        _socket = socket;
        _deadline = timeout is { } t ? DateTime.UtcNow + t : DateTime.MaxValue;
    }

    /// <summary>Connects to a tapdisk's control socket; the timeout (if any) is a total budget for the exchange.</summary>
    public static ControlClient Connect(int pid, TimeSpan? timeout = null) => ConnectPath(ControlPaths.ControlSocket(pid), timeout);

    public static ControlClient ConnectPath(string path, TimeSpan? timeout = null)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return new ControlClient(socket, timeout);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            int errno = e.SocketErrorCode switch
            {
                SocketError.AddressNotAvailable => ENOENT,
                SocketError.ConnectionRefused => ECONNREFUSED,
                _ => e.ErrorCode is > 0 and < 256 ? e.ErrorCode : EIO,
            };
            if (!File.Exists(path))
            {
                errno = ENOENT;
            }

            throw new ControlException(errno, $"connect {path}: {e.Message}");
        }
    }

    /// <summary>Sends one request (and an optional trailer) with a single write.</summary>
    public void Send(TapdiskMessage request, ReadOnlySpan<byte> trailer = default)
    {
        byte[] buffer = new byte[TapdiskMessage.Size + trailer.Length];
        request.Bytes.CopyTo(buffer);
        trailer.CopyTo(buffer.AsSpan(TapdiskMessage.Size));
        try
        {
            SetTimeout();
            int sent = 0;
            while (sent < buffer.Length)
            {
                sent += _socket.Send(buffer, sent, buffer.Length - sent, SocketFlags.None);
            }
        }
        catch (SocketException e)
        {
            throw Transport(e);
        }
    }

    public TapdiskMessage Receive()
    {
        byte[] buffer = new byte[TapdiskMessage.Size];
        ReceiveExactly(buffer);
        return TapdiskMessage.Parse(buffer);
    }

    public void ReceiveExactly(Span<byte> buffer)
    {
        try
        {
            int got = 0;
            while (got < buffer.Length)
            {
                SetTimeout();
                int n = _socket.Receive(buffer[got..], SocketFlags.None);
                if (n == 0)
                {
                    throw new ControlException(EIO, $"failure reading data {got}/{buffer.Length}");
                }

                got += n;
            }
        }
        catch (SocketException e)
        {
            throw Transport(e);
        }
    }

    /// <summary>Sends a request and reads one reply.</summary>
    public static TapdiskMessage Exchange(int pid, TapdiskMessage request, ReadOnlySpan<byte> trailer = default, TimeSpan? timeout = null)
    {
        using ControlClient client = Connect(pid, timeout);
        client.Send(request, trailer);
        return client.Receive();
    }

    public void Dispose() => _socket.Dispose();

    private void SetTimeout()
    {
        if (_deadline == DateTime.MaxValue)
        {
            _socket.ReceiveTimeout = 0;
            _socket.SendTimeout = 0;
            return;
        }

        int ms = (int)Math.Max(1, (_deadline - DateTime.UtcNow).TotalMilliseconds);
        if (DateTime.UtcNow >= _deadline)
        {
            throw new ControlException(ETIMEDOUT, "control exchange timed out");
        }

        _socket.ReceiveTimeout = ms;
        _socket.SendTimeout = ms;
    }

    private static ControlException Transport(SocketException e) => e.SocketErrorCode switch
    {
        SocketError.TimedOut or SocketError.WouldBlock => new ControlException(ETIMEDOUT, "control exchange timed out"),
        SocketError.ConnectionReset => new ControlException(104, e.Message),
        SocketError.Shutdown or SocketError.ConnectionAborted => new ControlException(EIO, e.Message),
        _ => new ControlException(EIO, e.Message),
    };
}
