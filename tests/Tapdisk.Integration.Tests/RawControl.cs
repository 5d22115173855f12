using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// Control messages built byte by byte from control-xen.md 2.2/2.3, deliberately independent of Tapdisk.Control so a
/// codec bug cannot hide on both sides: 544 bytes, type u16@0, cookie u16@2, union at 8; params.flags u32@8,
/// devnum u32@12, domid u32@16, path char[256]@20, prt_devnum i32@276, req_timeout u16@280, secondary char[256]@282.
/// </summary>
public static class RawControl
{
    public const int Size = 544;
    public const ushort Error = 1, Pid = 3, PidRsp = 4, Attach = 5, AttachRsp = 6, Open = 7, OpenRsp = 8;
    public const ushort Close = 13, CloseRsp = 14, Detach = 15, DetachRsp = 16, List = 19, ListRsp = 20;

    public static byte[] Message(ushort type, ushort cookie)
    {
        byte[] m = new byte[Size];
        BinaryPrimitives.WriteUInt16LittleEndian(m.AsSpan(0), type);
        BinaryPrimitives.WriteUInt16LittleEndian(m.AsSpan(2), cookie);
        return m;
    }

    /// <summary>An OPEN as tap-ctl sends it: flags, devnum = minor, path, prt_devnum = -1.</summary>
    public static byte[] OpenMessage(ushort minor, string parameters, uint flags = 0)
    {
        byte[] m = Message(Open, minor);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(12), minor);
        Encoding.ASCII.GetBytes(parameters).CopyTo(m, 20);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(276), -1);
        return m;
    }

    public static ushort Type(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadUInt16LittleEndian(m);

    public static ushort Cookie(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadUInt16LittleEndian(m[2..]);

    /// <summary>response.error (ERROR), tapdisk_pid (PID_RSP), list.count (LIST_RSP): the i32 at union offset 0.</summary>
    public static int Int0(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadInt32LittleEndian(m[8..]);

    public static int ListMinor(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadInt32LittleEndian(m[12..]);

    public static int ListState(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadInt32LittleEndian(m[16..]);

    public static string ListPath(ReadOnlySpan<byte> m)
    {
        ReadOnlySpan<byte> path = m.Slice(20, 256);
        int nul = path.IndexOf((byte)0);
        return Encoding.ASCII.GetString(nul < 0 ? path : path[..nul]);
    }

    public static ulong ImageSectors(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadUInt64LittleEndian(m[8..]);

    public static uint ImageSectorSize(ReadOnlySpan<byte> m) => BinaryPrimitives.ReadUInt32LittleEndian(m[16..]);

    /// <summary>One connection, one request (written with one send, as tap-ctl does), one 544-byte reply.</summary>
    public static byte[] Exchange(string controlSocket, byte[] request)
    {
        using Socket s = Connect(controlSocket);
        s.Send(request);
        return ReadMessage(s) ?? throw new IOException("the daemon closed the connection without replying");
    }

    /// <summary>LIST: every reply up to and including the terminator (count 0).</summary>
    public static List<byte[]> ExchangeList(string controlSocket)
    {
        using Socket s = Connect(controlSocket);
        s.Send(Message(List, 0xFFFF));
        var replies = new List<byte[]>();
        while (true)
        {
            byte[] m = ReadMessage(s) ?? throw new IOException("EOF before the LIST terminator");
            replies.Add(m);
            if (Type(m) != ListRsp || Int0(m) == 0)
            {
                return replies;
            }
        }
    }

    public static Socket Connect(string controlSocket)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        {
            ReceiveTimeout = 120_000, // hang guard only
            SendTimeout = 120_000,
        };
        s.Connect(new UnixDomainSocketEndPoint(controlSocket));
        return s;
    }

    /// <summary>Reads exactly 544 bytes; null on EOF before the first byte.</summary>
    public static byte[]? ReadMessage(Socket s)
    {
        byte[] m = new byte[Size];
        int got = 0;
        while (got < Size)
        {
            int n = s.Receive(m, got, Size - got, SocketFlags.None);
            if (n == 0)
            {
                return got == 0 ? null : throw new IOException($"EOF after {got} of {Size} bytes");
            }

            got += n;
        }

        return m;
    }
}
