using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Tapdisk.Abi;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Drivers.Nbd;

/// <summary>Negotiation (data-plane.md 6.2, 6.6; Appendix A): fixed newstyle with GO, else EXPORT_NAME, else oldstyle.</summary>
internal sealed partial class NbdClientConnection
{
    /// <summary>blktap's client asks for this export; tapdisk servers (blktap's and ours) accept any name.</summary>
    public const string BlktapExportName = "tapdisk_client";

    /// <summary>Option replies we accept; INFO, ACK and error texts are far smaller, so more is a hostile length.</summary>
    private const int MaxOptionReplyBytes = 16 * 1024;

    private const int MaxOptionReplies = 64;

    /// <summary>
    /// A blocking connect bounded by SO_SNDTIMEO (Linux applies the send timeout to connect(2), which then fails with
    /// EINPROGRESS). Never a non-blocking or async socket operation: after one, .NET emulates every later blocking
    /// send and receive on this socket, allocating per receive.
    /// </summary>
    private void ConnectSocket(Stopwatch deadline)
    {
        try
        {
            _socket.SendTimeout = (int)Math.Max(1, Remaining(deadline, "connect").TotalMilliseconds);
            _socket.Connect(Address.ResolveEndPoint());
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.InProgress or SocketError.WouldBlock or SocketError.TimedOut)
        {
            throw Refuse(Errno.ETIMEDOUT, $"connect did not complete within {_options.ConnectTimeout.TotalSeconds} s");
        }
        catch (SocketException e)
        {
            throw Refuse(Errno.EIO, $"connect failed: {e.Message}");
        }
    }

    private void Negotiate(Stopwatch deadline)
    {
        Span<byte> greeting = stackalloc byte[18];
        ReceiveHandshake(greeting[..16], deadline);
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(greeting);
        if (magic != NBDMAGIC)
        {
            throw Refuse(Errno.EIO, $"bad greeting magic 0x{magic:x16} (not an NBD server?)");
        }

        ulong style = BinaryPrimitives.ReadUInt64BigEndian(greeting[8..]);
        if (style == OldstyleMagic)
        {
            Span<byte> tail = stackalloc byte[OldstyleGreetingTailSize];
            ReceiveHandshake(tail, deadline);
            SetExport(BinaryPrimitives.ReadUInt64BigEndian(tail), (ushort)BinaryPrimitives.ReadUInt32BigEndian(tail[8..]));
            Style = "oldstyle";
            return;
        }

        if (style != IHAVEOPT)
        {
            throw Refuse(Errno.EIO, $"bad handshake magic 0x{style:x16}");
        }

        ReceiveHandshake(greeting[16..18], deadline);
        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting[16..]);
        bool fixedNewstyle = (serverFlags & NBD_FLAG_FIXED_NEWSTYLE) != 0;
        bool noZeroes = (serverFlags & NBD_FLAG_NO_ZEROES) != 0;
        Span<byte> clientFlags = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, (fixedNewstyle ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0));
        SendHandshake(clientFlags);

        // GO needs fixed newstyle (an old server would drop us on an unknown option); an ERR_UNSUP falls back.
        if (fixedNewstyle && TryGo(BlktapExportName, deadline, allowRetry: true))
        {
            Style = "fixed newstyle (GO)";
            return;
        }

        // The name without blktap's trailing NUL: a NUL is not part of an NBD name, and tapdisk servers ignore names.
        byte[] name = Encoding.UTF8.GetBytes(BlktapExportName);
        SendOption(NBD_OPT_EXPORT_NAME, name);
        Span<byte> reply = stackalloc byte[10 + ExportNameZeroPadSize];
        ReceiveHandshake(reply[..(noZeroes ? 10 : 10 + ExportNameZeroPadSize)], deadline);
        SetExport(BinaryPrimitives.ReadUInt64BigEndian(reply), BinaryPrimitives.ReadUInt16BigEndian(reply[8..]));
        Style = fixedNewstyle ? "fixed newstyle (EXPORT_NAME)" : "newstyle (EXPORT_NAME)";
    }

    /// <summary>NBD_OPT_GO asking for the block sizes; false if the server does not know GO.</summary>
    private bool TryGo(string exportName, Stopwatch deadline, bool allowRetry)
    {
        byte[] name = Encoding.UTF8.GetBytes(exportName);
        byte[] payload = new byte[4 + name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)name.Length);
        name.CopyTo(payload, 4);
        BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(4 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(6 + name.Length), NBD_INFO_BLOCK_SIZE);
        SendOption(NBD_OPT_GO, payload);

        bool haveExport = false;
        byte[] data = new byte[MaxOptionReplyBytes];
        Span<byte> header = stackalloc byte[20];
        for (int replies = 0; replies < MaxOptionReplies; replies++)
        {
            ReceiveHandshake(header, deadline);
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
            if (magic != NBD_REP_MAGIC)
            {
                throw Refuse(Errno.EIO, $"bad option reply magic 0x{magic:x16}");
            }

            if (option != NBD_OPT_GO)
            {
                throw Refuse(Errno.EIO, $"option reply for option {option}, expected GO ({NBD_OPT_GO})");
            }

            if (length > MaxOptionReplyBytes)
            {
                throw Refuse(Errno.EIO, $"option reply of {length} bytes (type 0x{type:x8}) exceeds {MaxOptionReplyBytes}");
            }

            Span<byte> body = data.AsSpan(0, (int)length);
            ReceiveHandshake(body, deadline);
            switch (type)
            {
                case NBD_REP_ACK:
                    if (!haveExport)
                    {
                        throw Refuse(Errno.EIO, "GO acknowledged without NBD_INFO_EXPORT");
                    }

                    return true;
                case NBD_REP_INFO:
                    haveExport |= ReadInfo(body);
                    break;
                case NBD_REP_ERR_UNSUP:
                    return false;
                case NBD_REP_ERR_UNKNOWN when allowRetry:
                    // qemu-nbd serves only its named export ("" by default); blktap's name is unknown there.
                    Log.RetryDefaultExport(_logger, Address.Text, exportName);
                    return TryGo(string.Empty, deadline, allowRetry: false);
                default:
                    if ((type & NBD_REP_FLAG_ERROR) != 0)
                    {
                        throw Refuse(Errno.ENXIO, $"server refused export '{exportName}': reply 0x{type:x8} {Encoding.UTF8.GetString(body)}");
                    }

                    break; // Other replies carry nothing we asked for.
            }
        }

        throw Refuse(Errno.EIO, $"more than {MaxOptionReplies} replies to GO");
    }

    /// <summary>Reads one NBD_REP_INFO; true if it was the export's size and flags.</summary>
    private bool ReadInfo(ReadOnlySpan<byte> body)
    {
        if (body.Length < 2)
        {
            throw Refuse(Errno.EIO, $"NBD_REP_INFO of {body.Length} bytes");
        }

        ushort info = BinaryPrimitives.ReadUInt16BigEndian(body);
        switch (info)
        {
            case NBD_INFO_EXPORT when body.Length == 12:
                SetExport(BinaryPrimitives.ReadUInt64BigEndian(body[2..]), BinaryPrimitives.ReadUInt16BigEndian(body[10..]));
                return true;
            case NBD_INFO_BLOCK_SIZE when body.Length == 14:
                uint minimum = BinaryPrimitives.ReadUInt32BigEndian(body[2..]);
                uint preferred = BinaryPrimitives.ReadUInt32BigEndian(body[6..]);
                uint maximum = BinaryPrimitives.ReadUInt32BigEndian(body[10..]);

                // proto.md: powers of two, min <= 64 KiB, min <= preferred, max a multiple of min.
                if (minimum == 0 || minimum > 65536 || !uint.IsPow2(minimum) || preferred < minimum || maximum < minimum)
                {
                    throw Refuse(Errno.EIO, $"invalid block sizes min {minimum} preferred {preferred} max {maximum}");
                }

                MinimumBlockBytes = (int)minimum;
                PreferredBlockBytes = (int)Math.Min(preferred, 32u * 1024 * 1024);
                MaximumBlockBytes = (int)Math.Min(maximum, (uint)MaximumBlockBytes);
                return false;
            case NBD_INFO_EXPORT or NBD_INFO_BLOCK_SIZE:
                throw Refuse(Errno.EIO, $"NBD_INFO type {info} of {body.Length} bytes");
            default:
                return false;
        }
    }

    private void SetExport(ulong sizeBytes, ushort flags)
    {
        if (sizeBytes > long.MaxValue)
        {
            throw Refuse(Errno.EIO, $"export size {sizeBytes} is out of range");
        }

        SizeBytes = (long)sizeBytes;

        // Without HAS_FLAGS the other bits mean nothing: no optional commands.
        TransmissionFlags = (flags & NBD_FLAG_HAS_FLAGS) != 0 ? flags : (ushort)0;
    }

    private void SendOption(uint option, ReadOnlySpan<byte> payload)
    {
        byte[] message = new byte[OptionHeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, IHAVEOPT);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(OptionHeaderSize));
        SendHandshake(message);
    }

    private void SendHandshake(ReadOnlySpan<byte> data)
    {
        try
        {
            while (data.Length > 0)
            {
                data = data[_socket.Send(data)..];
            }
        }
        catch (SocketException e)
        {
            throw Refuse(Errno.EIO, $"negotiation send failed: {e.Message}");
        }
    }

    /// <summary>Fills <paramref name="buffer"/>, each receive bounded by what is left of the negotiation time.</summary>
    private void ReceiveHandshake(Span<byte> buffer, Stopwatch deadline)
    {
        while (buffer.Length > 0)
        {
            _socket.ReceiveTimeout = (int)Math.Max(1, Remaining(deadline, "negotiation").TotalMilliseconds);
            int n;
            try
            {
                n = _socket.Receive(buffer);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
            {
                throw Refuse(Errno.ETIMEDOUT, $"negotiation did not complete within {_options.ConnectTimeout.TotalSeconds} s");
            }
            catch (SocketException e)
            {
                throw Refuse(Errno.EIO, $"negotiation receive failed: {e.Message}");
            }

            if (n == 0)
            {
                throw Refuse(Errno.ECONNRESET, "server closed the connection during negotiation");
            }

            buffer = buffer[n..];
        }
    }

    private TimeSpan Remaining(Stopwatch deadline, string step)
    {
        TimeSpan left = _options.ConnectTimeout - deadline.Elapsed;
        return left > TimeSpan.Zero ? left : throw Refuse(Errno.ETIMEDOUT, $"{step} did not complete within {_options.ConnectTimeout.TotalSeconds} s");
    }

    private ImageOpenException Refuse(int errno, string reason) => new(Address.Text, errno, $"NBD: {reason}");
}
