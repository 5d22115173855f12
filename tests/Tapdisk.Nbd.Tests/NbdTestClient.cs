using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Tapdisk.Storage;

namespace Tapdisk.Nbd.Tests;

/// <summary>A hand-rolled NBD client over an in-memory pipe pair, for byte-level protocol tests.</summary>
internal sealed class NbdTestClient : IAsyncDisposable
{
    public const ulong NbdMagic = 0x4E42444D41474943;
    public const ulong IHaveOpt = 0x49484156454F5054;
    public const ulong OptionReplyMagic = 0x0003E889045565A9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668E33EF;
    public const uint ExtendedRequestMagic = 0x21E41C71;
    public const uint ExtendedReplyMagic = 0x6E8A278C;

    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7,
        OptStructuredReply = 8, OptListMetaContext = 9, OptSetMetaContext = 10, OptExtendedHeaders = 11;

    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001, RepErrPolicy = 0x80000002, RepErrInvalid = 0x80000003,
        RepErrUnknown = 0x80000006, RepErrTooBig = 0x80000009;

    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdCache = 5,
        CmdWriteZeroes = 6, CmdBlockStatus = 7;

    public const ushort FlagFua = 1, FlagNoHole = 2, FlagDf = 4, FlagReqOne = 8, FlagFastZero = 16, FlagPayloadLen = 32;

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly PipeWriter _send;
    private readonly PipeReader _receive;
    private readonly CancellationTokenSource _cts = new();
    private readonly System.Net.Sockets.NetworkStream? _socket;

    /// <summary>Runs <paramref name="server"/> in process over a pair of in-memory pipes.</summary>
    public NbdTestClient(NbdServer server)
    {
        var toServer = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var toClient = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        _send = toServer.Writer;
        _receive = toClient.Reader;
        ServerTask = Task.Run(() => server.HandleConnectionAsync(new TestDuplexPipe(toServer.Reader, toClient.Writer), _cts.Token));
    }

    private NbdTestClient(System.Net.Sockets.Socket socket)
    {
        var stream = new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        _socket = stream;
        _send = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        _receive = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        ServerTask = Task.CompletedTask;
    }

    /// <summary>Connects to a real UNIX socket (the server runs elsewhere; <see cref="ServerTask"/> is not tracked).</summary>
    public static NbdTestClient ConnectUnix(string path)
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        return new NbdTestClient(socket);
    }

    public Task ServerTask { get; }

    public ushort TransmissionFlags { get; private set; }

    public long ExportSize { get; private set; }

    public static NbdTestClient Connect(IBlockImage image, NbdServerOptions? options = null) =>
        new(new NbdServer(new NbdExport("tapdisk_client", "test export", image), options));

    public async Task SendAsync(ReadOnlyMemory<byte> bytes)
    {
        await _send.WriteAsync(bytes);
    }

    /// <summary>The client hangs up (half-close towards the server).</summary>
    public async Task CloseSendAsync() => await _send.CompleteAsync();

    /// <summary>The connection breaks: the server's next read fails with an IOException (a reset).</summary>
    public async Task ResetSendAsync() => await _send.CompleteAsync(new IOException("connection reset by peer"));

    /// <summary>Cancels the token the server runs this connection with.</summary>
    public async Task CancelServerAsync() => await _cts.CancelAsync();

    public async Task<byte[]> ReadExactAsync(int count)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        byte[] result = new byte[count];
        int filled = 0;
        while (filled < count)
        {
            ReadResult r = await _receive.ReadAsync(timeout.Token);
            int n = (int)Math.Min(r.Buffer.Length, count - filled);
            r.Buffer.Slice(0, n).CopyTo(result.AsSpan(filled));
            filled += n;
            _receive.AdvanceTo(r.Buffer.GetPosition(n));
            if (filled < count && r.IsCompleted)
            {
                throw new EndOfStreamException($"server closed after {filled} of {count} bytes");
            }
        }

        return result;
    }

    /// <summary>True if the server closed its side with nothing more to read.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        ReadResult r = await _receive.ReadAsync(timeout.Token);
        bool closed = r.IsCompleted && r.Buffer.IsEmpty;
        _receive.AdvanceTo(r.Buffer.Start, r.Buffer.End);
        return closed;
    }

    /// <summary>Reads and discards until the server closes its side; returns how many bytes came before the close.</summary>
    public async Task<long> DrainUntilClosedAsync()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        long drained = 0;
        while (true)
        {
            ReadResult r = await _receive.ReadAsync(timeout.Token);
            drained += r.Buffer.Length;
            _receive.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted)
            {
                return drained;
            }
        }
    }

    /// <summary>Everything the server sends until it closes its side.</summary>
    public async Task<byte[]> ReadToEndAsync()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var all = new List<byte>();
        while (true)
        {
            ReadResult r = await _receive.ReadAsync(timeout.Token);
            all.AddRange(r.Buffer.ToArray());
            _receive.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted)
            {
                return [.. all];
            }
        }
    }

    public async Task WaitServerAsync() => await ServerTask.WaitAsync(Timeout);

    // ---- handshake ----

    public async Task GreetAsync(uint clientFlags = 3)
    {
        byte[] greeting = await ReadExactAsync(18);
        Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        Assert.Equal(3, BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16)));
        byte[] flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
        await SendAsync(flags);
    }

    public Task SendOptionAsync(uint option, ReadOnlySpan<byte> payload) => SendOptionAsync(option, (uint)payload.Length, payload.ToArray());

    public async Task SendOptionAsync(uint option, uint declaredLength, byte[] payload)
    {
        byte[] message = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), declaredLength);
        payload.CopyTo(message, 16);
        await SendAsync(message);
    }

    public async Task<(uint Option, uint Type, byte[] Data)> ReadOptionReplyAsync()
    {
        byte[] header = await ReadExactAsync(20);
        Assert.Equal(OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.True(length < 1024 * 1024, "option reply too long");
        byte[] data = await ReadExactAsync((int)length);
        return (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), data);
    }

    /// <summary>Reads replies to one option up to and including its ACK or error.</summary>
    public async Task<List<(uint Type, byte[] Data)>> ReadOptionRepliesAsync(uint option)
    {
        var replies = new List<(uint, byte[])>();
        while (true)
        {
            (uint opt, uint type, byte[] data) = await ReadOptionReplyAsync();
            Assert.Equal(option, opt);
            replies.Add((type, data));
            if (type == RepAck || (type & 0x80000000) != 0)
            {
                return replies;
            }
        }
    }

    public static byte[] InfoPayload(string name, params ushort[] infos)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        byte[] payload = new byte[4 + nameBytes.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)nameBytes.Length);
        nameBytes.CopyTo(payload, 4);
        BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(4 + nameBytes.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(6 + nameBytes.Length + (2 * i)), infos[i]);
        }

        return payload;
    }

    public static byte[] MetaContextPayload(string name, params string[] queries)
    {
        var bytes = new List<byte>();
        void U32(int v)
        {
            byte[] b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, (uint)v);
            bytes.AddRange(b);
        }

        byte[] n = Encoding.UTF8.GetBytes(name);
        U32(n.Length);
        bytes.AddRange(n);
        U32(queries.Length);
        foreach (string q in queries)
        {
            byte[] qb = Encoding.UTF8.GetBytes(q);
            U32(qb.Length);
            bytes.AddRange(qb);
        }

        return [.. bytes];
    }

    /// <summary>Greets, optionally negotiates structured replies and base:allocation, then GO.</summary>
    public async Task NegotiateAsync(bool structured = true, bool baseAllocation = true, string name = "")
    {
        await GreetAsync();
        if (structured)
        {
            await SendOptionAsync(OptStructuredReply, []);
            Assert.Equal(RepAck, (await ReadOptionReplyAsync()).Type);
            if (baseAllocation)
            {
                await SendOptionAsync(OptSetMetaContext, MetaContextPayload(name, "base:allocation"));
                List<(uint Type, byte[] Data)> replies = await ReadOptionRepliesAsync(OptSetMetaContext);
                Assert.Equal(RepMetaContext, replies[0].Type);
                Assert.Equal(RepAck, replies[^1].Type);
            }
        }

        await SendOptionAsync(OptGo, InfoPayload(name));
        List<(uint Type, byte[] Data)> go = await ReadOptionRepliesAsync(OptGo);
        Assert.Equal(RepAck, go[^1].Type);
        byte[] export = go.First(r => r.Type == RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0).Data;
        ExportSize = (long)BinaryPrimitives.ReadUInt64BigEndian(export.AsSpan(2));
        TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(export.AsSpan(10));
    }

    /// <summary>Greets, negotiates extended headers (structured replies implied), optionally base:allocation, then GO.</summary>
    public async Task NegotiateExtendedAsync(bool baseAllocation = true, string name = "")
    {
        await GreetAsync();
        await SendOptionAsync(OptExtendedHeaders, []);
        Assert.Equal(RepAck, (await ReadOptionReplyAsync()).Type);
        if (baseAllocation)
        {
            await SendOptionAsync(OptSetMetaContext, MetaContextPayload(name, "base:allocation"));
            Assert.Equal(RepAck, (await ReadOptionRepliesAsync(OptSetMetaContext))[^1].Type);
        }

        await SendOptionAsync(OptGo, InfoPayload(name));
        List<(uint Type, byte[] Data)> go = await ReadOptionRepliesAsync(OptGo);
        Assert.Equal(RepAck, go[^1].Type);
        byte[] export = go.First(r => r.Type == RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0).Data;
        ExportSize = (long)BinaryPrimitives.ReadUInt64BigEndian(export.AsSpan(2));
        TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(export.AsSpan(10));
    }

    // ---- transmission ----

    /// <summary>A 32-byte extended request header (64-bit length).</summary>
    public static byte[] ExtendedRequest(ushort flags, ushort type, ulong handle, ulong offset, ulong length, uint magic = ExtendedRequestMagic)
    {
        byte[] r = RequestHeader(32, magic, flags, type, handle, offset);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(24), length);
        return r;
    }

    public Task SendExtendedRequestAsync(ushort type, ulong handle, ulong offset, ulong length, ushort flags = 0, byte[]? payload = null) =>
        SendWithPayloadAsync(ExtendedRequest(flags, type, handle, offset, length), payload);

    /// <summary>One extended reply chunk: its header fields (offset echoes the request's) and payload.</summary>
    public async Task<(ushort Flags, ushort Type, ulong Handle, ulong Offset, byte[] Payload)> ReadExtendedChunkAsync()
    {
        byte[] r = await ReadExactAsync(32);
        Assert.Equal(ExtendedReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(r));
        ulong length = BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(24));
        Assert.True(length < 64 * 1024 * 1024, "chunk payload too long");
        byte[] payload = await ReadExactAsync((int)length);
        return (BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(6)),
            BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(8)), BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(16)), payload);
    }

    public static byte[] Request(ushort flags, ushort type, ulong handle, ulong offset, uint length, uint magic = RequestMagic)
    {
        byte[] r = RequestHeader(28, magic, flags, type, handle, offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        return r;
    }

    public Task SendRequestAsync(ushort type, ulong handle, ulong offset, uint length, ushort flags = 0, byte[]? payload = null) =>
        SendWithPayloadAsync(Request(flags, type, handle, offset, length), payload);

    /// <summary>The fields both header styles share (the first 24 bytes); the length, 32 or 64 bits, follows.</summary>
    private static byte[] RequestHeader(int size, uint magic, ushort flags, ushort type, ulong handle, ulong offset)
    {
        byte[] r = new byte[size];
        BinaryPrimitives.WriteUInt32BigEndian(r, magic);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), offset);
        return r;
    }

    private Task SendWithPayloadAsync(byte[] header, byte[]? payload) => SendAsync(payload is null ? header : [.. header, .. payload]);

    public async Task<(uint Error, ulong Handle)> ReadSimpleReplyAsync()
    {
        byte[] r = await ReadExactAsync(16);
        Assert.Equal(SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(r));
        return (BinaryPrimitives.ReadUInt32BigEndian(r.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(8)));
    }

    public async Task<(ushort Flags, ushort Type, ulong Handle, byte[] Payload)> ReadChunkAsync()
    {
        byte[] r = await ReadExactAsync(20);
        Assert.Equal(StructuredReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(r));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(r.AsSpan(16));
        byte[] payload = await ReadExactAsync((int)length);
        return (BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(6)), BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(8)), payload);
    }

    /// <summary>Reads one reply of either kind: (handle, error, read data or chunk payload).</summary>
    public async Task<(ulong Handle, uint Error, ushort ChunkType, byte[] Payload)> ReadAnyReplyAsync(Func<ulong, int> readLengthOfHandle)
    {
        byte[] magic = await ReadExactAsync(4);
        uint m = BinaryPrimitives.ReadUInt32BigEndian(magic);
        if (m == SimpleReplyMagic)
        {
            byte[] rest = await ReadExactAsync(12);
            uint error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            ulong handle = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
            byte[] data = error == 0 ? await ReadExactAsync(readLengthOfHandle(handle)) : [];
            return (handle, error, 0xFFFF, data);
        }

        Assert.Equal(StructuredReplyMagic, m);
        byte[] header = await ReadExactAsync(16);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
        ulong h = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4));
        byte[] payload = await ReadExactAsync((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
        uint err = type == 0x8001 ? BinaryPrimitives.ReadUInt32BigEndian(payload) : 0;
        return (h, err, type, payload);
    }

    public async ValueTask DisposeAsync()
    {
        await _send.CompleteAsync();
        try
        {
            await ServerTask.WaitAsync(Timeout);
        }
        finally
        {
            await _cts.CancelAsync();
            _cts.Dispose();
            await _receive.CompleteAsync();
            _socket?.Dispose();
        }
    }

    private sealed class TestDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
