using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit.Abstractions;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

[CollectionDefinition(nameof(NbdServerAllocationTests), DisableParallelization = true)]
public sealed class NbdServerAllocationCollection;

/// <summary>Steady-state READ/WRITE must not allocate per request (STYLE.md section 5); measured process-wide.</summary>
[Collection(nameof(NbdServerAllocationTests))]
public sealed class NbdServerAllocationTests(ITestOutputHelper output)
{
    private readonly ITestOutputHelper _output = output;

    private const int RequestBytes = 4096;
    private const int Batch = 32;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadWrite_SteadyState_AllocatesAlmostNothingPerRequest(bool extendedHeaders)
    {
        var image = new MemoryImage(16L * 1024 * 1024);
        await image.WriteAsync(0, new byte[Batch * RequestBytes]);
        var toServer = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var toClient = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var server = new NbdServer(new NbdExport("", "", image));
        Task serverTask = server.HandleConnectionAsync(new Duplex(toServer.Reader, toClient.Writer));

        // Negotiate with the regular client code over the same pipes, then switch to a lean loop.
        ReadResult greet = await toClient.Reader.ReadAtLeastAsync(18);
        toClient.Reader.AdvanceTo(greet.Buffer.GetPosition(18));
        if (extendedHeaders)
        {
            await toServer.Writer.WriteAsync((byte[])[0, 0, 0, 3, .. OptionBytes(OptExtendedHeaders, [])]);
            await DrainOptionRepliesAsync(toClient.Reader);
        }

        byte[] go = [.. extendedHeaders ? [] : (byte[])[0, 0, 0, 3], .. OptionBytes(OptGo, InfoPayload(""))];
        await toServer.Writer.WriteAsync(go);
        await DrainOptionRepliesAsync(toClient.Reader);

        // Extended: 32-byte headers both ways, an empty chunk per write, an OFFSET_DATA chunk (offset + data) per read.
        byte[] Header(ushort command, int i) => extendedHeaders
            ? ExtendedRequest(0, command, (ulong)i, (ulong)i * RequestBytes, RequestBytes)
            : Request(0, command, (ulong)i, (ulong)i * RequestBytes, RequestBytes);
        byte[] writes = [.. Enumerable.Range(0, Batch).SelectMany(i => (byte[])[.. Header(CmdWrite, i), .. new byte[RequestBytes]])];
        byte[] reads = [.. Enumerable.Range(0, Batch).SelectMany(i => Header(CmdRead, i))];
        int writeReplyBytes = Batch * (extendedHeaders ? 32 : 16), readReplyBytes = Batch * ((extendedHeaders ? 40 : 16) + RequestBytes);

        async Task RoundAsync()
        {
            await toServer.Writer.WriteAsync(writes);
            await ConsumeAsync(toClient.Reader, writeReplyBytes);
            await toServer.Writer.WriteAsync(reads);
            await ConsumeAsync(toClient.Reader, readReplyBytes);
        }

        for (int i = 0; i < 200; i++)
        {
            await RoundAsync();
        }

        const int Rounds = 500;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < Rounds; i++)
        {
            await RoundAsync();
        }

        long perRequest = (GC.GetTotalAllocatedBytes(precise: true) - before) / (Rounds * 2L * Batch);
        await toServer.Writer.CompleteAsync();
        await serverTask.WaitAsync(NbdTestClient.Timeout);

        // Release: only the test's own awaits and the BCL's amortized queue segments remain (a request object or a
        // buffer would be >= 100 B). Debug compiles async state machines as classes (about 650 B a request here),
        // so there the budget only catches buffers and request objects.
        long budget = IsOptimized(typeof(NbdServer).Assembly) ? 64 : 1024;
        _output.WriteLine($"{perRequest} bytes per request (budget {budget})");
        Assert.True(perRequest < budget, $"{perRequest} bytes allocated per request in steady state (budget {budget})");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadWrite_OverAUnixSocket_SteadyState_AllocatesAlmostNothingPerRequest(bool directFile)
    {
        // The socket transport (receive thread, replies sent by the I/O workers) with a client of blocking calls on
        // preallocated buffers, so whatever is allocated is the server's. A memory image completes every request
        // where it starts; an O_DIRECT file on the io_uring engine completes them later through the connection's
        // loop (on the thread engine, on the I/O workers): the paths where a suspended request could allocate.
        using var directory = new TempDirectory();
        IBlockImage image;
        if (directFile)
        {
            string path = directory.File("r.raw");
            await File.WriteAllBytesAsync(path, new byte[16 * 1024 * 1024]);
            var raw = Tapdisk.Drivers.Raw.RawImage.Open(path, ImageOpenOptions.ReadWrite with { DirectIo = true });
            Assert.True(raw.IsDirect, "O_DIRECT refused in " + directory.Path);
            image = raw;
        }
        else
        {
            image = new MemoryImage(16L * 1024 * 1024);
            await image.WriteAsync(0, new byte[Batch * RequestBytes]);
        }

        using IBlockImage owned = image;
        var server = new NbdServer(new NbdExport("", "", image));
        await using NbdUnixListener listener = NbdUnixListener.Start(directory.File("nbd.sock"), server);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(listener.Path));
        socket.ReceiveTimeout = (int)NbdTestClient.Timeout.TotalMilliseconds;

        byte[] header = new byte[20];
        UnixSocketPair.ReceiveExactly(socket, header.AsSpan(0, 18));
        socket.Send([0, 0, 0, 3, .. OptionBytes(OptGo, InfoPayload(""))]);
        byte[] scratch = new byte[4096];
        while (true)
        {
            UnixSocketPair.ReceiveExactly(socket, header);
            UnixSocketPair.ReceiveExactly(socket, scratch.AsSpan(0, (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16))));
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)) == RepAck)
            {
                break;
            }
        }

        byte[] writes = [.. Enumerable.Range(0, Batch).SelectMany(i => (byte[])[.. Request(0, CmdWrite, (ulong)i, (ulong)i * RequestBytes, RequestBytes), .. new byte[RequestBytes]])];
        byte[] reads = [.. Enumerable.Range(0, Batch).SelectMany(i => Request(0, CmdRead, (ulong)i, (ulong)i * RequestBytes, RequestBytes))];
        byte[] replies = new byte[Batch * (16 + RequestBytes)];
        int writeReplyBytes = Batch * 16, readReplyBytes = replies.Length;

        void Round()
        {
            socket.Send(writes);
            UnixSocketPair.ReceiveExactly(socket, replies.AsSpan(0, writeReplyBytes));
            socket.Send(reads);
            UnixSocketPair.ReceiveExactly(socket, replies.AsSpan(0, readReplyBytes));
        }

        for (int i = 0; i < 200; i++)
        {
            Round();
        }

        const int Rounds = 500;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < Rounds; i++)
        {
            Round();
        }

        long perRequest = (GC.GetTotalAllocatedBytes(precise: true) - before) / (Rounds * 2L * Batch);
        Assert.Equal(SimpleReplyMagic, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(replies));
        socket.Shutdown(SocketShutdown.Both);

        // The client here awaits nothing, so the budget is below any object (a Task is 64 B or more).
        long budget = IsOptimized(typeof(NbdServer).Assembly) ? 16 : 1024;
        _output.WriteLine($"{perRequest} bytes per request (budget {budget})");
        Assert.True(perRequest < budget, $"{perRequest} bytes allocated per request in steady state (budget {budget})");
    }

    private static bool IsOptimized(System.Reflection.Assembly assembly) =>
        assembly.GetCustomAttributes(typeof(System.Diagnostics.DebuggableAttribute), false) is not [System.Diagnostics.DebuggableAttribute { IsJITOptimizerDisabled: true }];

    private static byte[] OptionBytes(uint option, byte[] payload)
    {
        byte[] header = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(header, IHaveOpt);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)payload.Length);
        return [.. header, .. payload];
    }

    private static async Task DrainOptionRepliesAsync(PipeReader reader)
    {
        while (true)
        {
            ReadResult r = await reader.ReadAtLeastAsync(20);
            byte[] header = r.Buffer.Slice(0, 20).ToArray();
            uint type = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            reader.AdvanceTo(r.Buffer.Start);
            r = await reader.ReadAtLeastAsync(20 + length);
            reader.AdvanceTo(r.Buffer.GetPosition(20 + length));
            if (type == RepAck)
            {
                return;
            }
        }
    }

    private static async Task ConsumeAsync(PipeReader reader, long count)
    {
        while (count > 0)
        {
            ReadResult r = await reader.ReadAsync();
            long n = Math.Min(r.Buffer.Length, count);
            reader.AdvanceTo(r.Buffer.GetPosition(n));
            count -= n;
        }
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
