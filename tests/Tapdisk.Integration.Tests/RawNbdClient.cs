using System.Buffers.Binary;
using System.Net.Sockets;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// A minimal NBD client written from the protocol document (fixed newstyle, NBD_OPT_GO, simple replies), so a test
/// can hold one connection open across PAUSE/RESUME and see what a long-lived client (qemu) would see, or (extended
/// headers) send requests no well-behaved client would.
/// </summary>
public sealed class RawNbdClient : IDisposable
{
    private const ulong IHaveOpt = 0x49484156454F5054;
    private const ulong OptReplyMagic = 0x0003e889045565a9;
    private const uint RequestMagic = 0x25609513, SimpleReplyMagic = 0x67446698;
    private const uint ExtendedRequestMagic = 0x21E41C71, ExtendedReplyMagic = 0x6E8A278C;
    private const uint OptGo = 7, OptExtendedHeaders = 11, RepAck = 1, RepInfo = 3;
    private readonly Socket _socket;
    private ulong _handle;
    private bool _disposed;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
    }

    public long Size { get; private set; }

    /// <summary>NBD_OPT_EXTENDED_HEADERS was negotiated: 32-byte requests and reply chunks only.</summary>
    public bool Extended { get; private set; }

    public static RawNbdClient Connect(string path) => Connect(path, extended: false);

    /// <summary>Connects negotiating extended headers first (the server must accept them).</summary>
    public static RawNbdClient ConnectExtended(string path) => Connect(path, extended: true);

    private static RawNbdClient Connect(string path, bool extended)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 120_000, SendTimeout = 120_000 };
        s.Connect(new UnixDomainSocketEndPoint(path));
        var c = new RawNbdClient(s);
        try
        {
            c.Handshake(extended);
        }
        catch
        {
            c.Dispose();
            throw;
        }

        return c;
    }

    private void Handshake(bool extended)
    {
        byte[] greeting = ReadExactly(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != 0x4e42444d41474943 || BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)) != IHaveOpt)
        {
            throw new IOException("not an NBD newstyle server");
        }

        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
        byte[] clientFlags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, serverFlags & 3u); // FIXED_NEWSTYLE | NO_ZEROES as offered
        _socket.Send(clientFlags);
        if (extended)
        {
            byte[] option = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(option, IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), OptExtendedHeaders);
            _socket.Send(option);
            byte[] reply = ReadExactly(20);
            ReadExactly((int)BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(16)));
            uint replyType = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(12));
            if (replyType != RepAck)
            {
                throw new IOException($"NBD_OPT_EXTENDED_HEADERS refused: reply type 0x{replyType:x}");
            }

            Extended = true;
        }

        // NBD_OPT_GO, export name "", no information requests.
        byte[] go = new byte[16 + 6];
        BinaryPrimitives.WriteUInt64BigEndian(go, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(go.AsSpan(8), OptGo);
        BinaryPrimitives.WriteUInt32BigEndian(go.AsSpan(12), 6);
        _socket.Send(go);
        while (true)
        {
            byte[] header = ReadExactly(20);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != OptReplyMagic)
            {
                throw new IOException("bad option reply magic");
            }

            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            byte[] data = ReadExactly((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
            if (type == RepAck)
            {
                return;
            }

            if ((type & 0x80000000) != 0)
            {
                throw new IOException($"NBD_OPT_GO refused: reply type 0x{type:x}");
            }

            if (type == RepInfo && data.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(data) == 0)
            {
                Size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
            }
        }
    }

    /// <summary>Sends NBD_CMD_READ without waiting for the reply.</summary>
    public ulong SendRead(long offset, int length)
    {
        byte[] request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 0); // NBD_CMD_READ
        ulong handle = ++_handle;
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
        _socket.Send(request);
        return handle;
    }

    /// <summary>Reads the simple reply to a READ: its data, or throws with the NBD error.</summary>
    public byte[] ReceiveRead(ulong handle, int length)
    {
        byte[] reply = ReadExactly(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != SimpleReplyMagic)
        {
            throw new IOException("expected a simple reply");
        }

        uint error = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4));
        if (BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)) != handle)
        {
            throw new IOException("reply for another handle");
        }

        return error != 0 ? throw new IOException($"NBD error {error}") : ReadExactly(length);
    }

    public byte[] Read(long offset, int length) => ReceiveRead(SendRead(offset, length), length);

    /// <summary>NBD_CMD_WRITE (with NBD_CMD_FLAG_FUA if asked), waiting for its simple reply; throws with the NBD error.</summary>
    public void Write(long offset, ReadOnlySpan<byte> data, bool fua = false)
    {
        byte[] request = new byte[28 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), fua ? (ushort)1 : (ushort)0);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 1); // NBD_CMD_WRITE
        ulong handle = ++_handle;
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)data.Length);
        data.CopyTo(request.AsSpan(28));
        _socket.Send(request);
        ReceiveEmpty(handle);
    }

    /// <summary>NBD_CMD_FLUSH, waiting for its reply.</summary>
    public void Flush()
    {
        byte[] request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 3); // NBD_CMD_FLUSH
        ulong handle = ++_handle;
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), handle);
        _socket.Send(request);
        ReceiveEmpty(handle);
    }

    private void ReceiveEmpty(ulong handle)
    {
        byte[] reply = ReadExactly(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != SimpleReplyMagic || BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)) != handle)
        {
            throw new IOException("expected the simple reply to the request just sent");
        }

        uint error = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4));
        if (error != 0)
        {
            throw new IOException($"NBD error {error}");
        }
    }

    /// <summary>Sends a 32-byte extended request header (any magic) and its payload; returns the cookie.</summary>
    public ulong SendExtended(ushort flags, ushort type, ulong offset, ulong length, ReadOnlySpan<byte> payload = default, uint magic = ExtendedRequestMagic)
    {
        byte[] request = new byte[32 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(request, magic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        ulong handle = ++_handle;
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(24), length);
        payload.CopyTo(request.AsSpan(32));
        _socket.Send(request);
        return handle;
    }

    /// <summary>Reads one extended reply chunk: flags, type, cookie, the echoed offset and the payload.</summary>
    public (ushort Flags, ushort Type, ulong Handle, ulong Offset, byte[] Payload) ReceiveExtendedChunk()
    {
        byte[] header = ReadExactly(32);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != ExtendedReplyMagic)
        {
            throw new IOException($"expected an extended reply, got magic 0x{BinaryPrimitives.ReadUInt32BigEndian(header):x8}");
        }

        ulong length = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(24));
        if (length > 64 * 1024 * 1024)
        {
            throw new IOException($"reply chunk of {length} bytes");
        }

        return (BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)),
            BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16)), ReadExactly((int)length));
    }

    /// <summary>True once the server has closed the connection with nothing more sent (the receive timeout guards a hang).</summary>
    public bool IsClosedByServer()
    {
        byte[] one = new byte[1];
        try
        {
            return _socket.Receive(one) == 0;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            // Closed with our unread request bytes still queued: the kernel turns that into a reset.
            return true;
        }
    }

    private byte[] ReadExactly(int count)
    {
        byte[] buffer = new byte[count];
        int got = 0;
        while (got < count)
        {
            int n = _socket.Receive(buffer, got, count - got, SocketFlags.None);
            if (n == 0)
            {
                throw new IOException($"NBD server closed the connection ({got} of {count} bytes)");
            }

            got += n;
        }

        return buffer;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            // NBD_CMD_DISC, politely.
            byte[] request = new byte[Extended ? 32 : 28];
            BinaryPrimitives.WriteUInt32BigEndian(request, Extended ? ExtendedRequestMagic : RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 2);
            _socket.Send(request);
        }
        catch (SocketException)
        {
            // The server is gone: nothing to say goodbye to.
        }

        _socket.Dispose();
    }
}
