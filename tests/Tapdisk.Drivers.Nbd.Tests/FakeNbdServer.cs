using System.Buffers.Binary;
using System.Net.Sockets;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// A scripted NBD server on a real UNIX socket: it accepts one client and runs the test's script on it, with helpers
/// for the honest parts (handshakes, reading requests, replying) so each script only spells out its misbehaviour.
/// Dispose releases a script blocked in <see cref="Stall"/>, closes the connection and waits for the script to end.
/// </summary>
internal sealed class FakeNbdServer : IDisposable
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(1);

    private readonly TempDirectory _directory = TempDirectory.ForSockets();
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly ManualResetEventSlim _release = new();
    private readonly Thread _thread;
    private Socket? _client;

    public FakeNbdServer(Action<FakeNbdServer> script)
    {
        SocketPath = _directory.File("fake.sock");
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(1);
        _thread = new Thread(() => Run(script)) { IsBackground = true, Name = "fake-nbd-server" };
        _thread.Start();
    }

    public string SocketPath { get; }

    /// <summary>The disk the honest parts serve (64 KiB of a pattern).</summary>
    public byte[] Disk { get; } = DiskContent.Pattern(64 * 1024, 7);

    /// <summary>Set when the client sent NBD_CMD_DISC.</summary>
    public bool SawDisconnect { get; private set; }

    /// <summary>What ended the script early (the client hanging up is expected in most tests).</summary>
    public Exception? ScriptError { get; private set; }

    private Socket Client => _client!;

    private void Run(Action<FakeNbdServer> script)
    {
        try
        {
            _client = _listener.Accept();
            script(this);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            ScriptError = e;
        }
        finally
        {
            _client?.Dispose();
        }
    }

    // ---- honest parts ----

    /// <summary>Fixed newstyle, then NBD_OPT_GO answered with the export's size and flags and an ACK.</summary>
    public void NewstyleGo(ushort transmissionFlags = NBD_FLAG_HAS_FLAGS)
    {
        SendGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        ReceiveExactly(4); // client flags
        (uint option, byte[] _) = ReceiveOption();
        if (option != NBD_OPT_GO)
        {
            throw new EndOfStreamException($"expected GO, got option {option}");
        }

        byte[] info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, NBD_INFO_EXPORT);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)Disk.Length);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), transmissionFlags);
        SendOptionReply(NBD_OPT_GO, NBD_REP_INFO, info);
        SendOptionReply(NBD_OPT_GO, NBD_REP_ACK, []);
    }

    public void SendGreeting(ushort handshakeFlags)
    {
        byte[] greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NBDMAGIC);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), IHAVEOPT);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), handshakeFlags);
        Send(greeting);
    }

    public (uint Option, byte[] Data) ReceiveOption()
    {
        byte[] header = ReceiveExactly(OptionHeaderSize);
        uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        return (option, ReceiveExactly((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12))));
    }

    public void SendOptionReply(uint option, uint type, ReadOnlySpan<byte> data, uint? lengthOverride = null)
    {
        byte[] reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NBD_REP_MAGIC);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), lengthOverride ?? (uint)data.Length);
        data.CopyTo(reply.AsSpan(20));
        Send(reply);
    }

    public FakeRequest ReceiveRequest()
    {
        byte[] header = ReceiveExactly(RequestSize);
        var request = new FakeRequest(
            BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)),
            BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)),
            BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)),
            (long)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16)),
            (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24)));
        if (request.Command == NBD_CMD_WRITE)
        {
            ReceiveExactly(request.Length).CopyTo(Disk.AsSpan((int)request.Offset));
        }

        if (request.Command == NBD_CMD_DISC)
        {
            SawDisconnect = true;
        }

        return request;
    }

    /// <summary>A simple reply; a successful READ carries the disk's bytes.</summary>
    public void Reply(FakeRequest request, uint error = 0, uint magic = NBD_SIMPLE_REPLY_MAGIC, ulong? handle = null)
    {
        bool data = request.Command == NBD_CMD_READ && error == 0;
        byte[] reply = new byte[SimpleReplySize + (data ? request.Length : 0)];
        BinaryPrimitives.WriteUInt32BigEndian(reply, magic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(reply.AsSpan(8), handle ?? request.Handle);
        if (data)
        {
            Disk.AsSpan((int)request.Offset, request.Length).CopyTo(reply.AsSpan(SimpleReplySize));
        }

        Send(reply);
    }

    /// <summary>Serves honestly until the client disconnects.</summary>
    public void ServeUntilDisconnect()
    {
        while (true)
        {
            FakeRequest request = ReceiveRequest();
            if (request.Command == NBD_CMD_DISC)
            {
                return;
            }

            Reply(request);
        }
    }

    /// <summary>Blocks the script (a server that stopped answering) until the test is over.</summary>
    public void Stall() => _release.Wait(s_hangGuard);

    public void Send(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            data = data[Client.Send(data)..];
        }
    }

    public byte[] ReceiveExactly(int length)
    {
        byte[] buffer = new byte[length];
        int done = 0;
        while (done < length)
        {
            int n = Client.Receive(buffer.AsSpan(done));
            if (n == 0)
            {
                throw new EndOfStreamException("client closed the connection");
            }

            done += n;
        }

        return buffer;
    }

    /// <summary>Waits (bounded) for the script to finish.</summary>
    public void WaitForScript() => Assert.True(_thread.Join(s_hangGuard), "the fake server's script did not finish");

    public void Dispose()
    {
        _release.Set();
        _listener.Dispose();
        try
        {
            _client?.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Teardown: already closed by the script.
        }

        _thread.Join(s_hangGuard);
        _release.Dispose();
        _directory.Dispose();
    }
}

internal readonly record struct FakeRequest(ushort Command, ushort Flags, ulong Handle, long Offset, int Length);
