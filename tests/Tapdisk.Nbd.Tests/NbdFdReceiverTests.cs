using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;

namespace Tapdisk.Nbd.Tests;

/// <summary>
/// blktap's fd receivers (nbdserver[-new]&lt;pid&gt;.&lt;minor&gt;): a broker accepts a real client (nbdinfo, qemu-img)
/// and hands its socket to the receiver with SCM_RIGHTS, as xapi does; the client then talks to our server.
/// </summary>
public sealed class NbdFdReceiverTests
{
    private const long Size = 8 * 1024 * 1024;

    [Theory]
    [InlineData(NbdHandshakeStyle.FixedNewstyle, "newstyle-fixed")]
    [InlineData(NbdHandshakeStyle.Oldstyle, "oldstyle")]
    public async Task NbdInfo_ThroughHandedOverSocket_SeesTheExport(NbdHandshakeStyle style, string protocol)
    {
        await using Receiver receiver = Receiver.Start(new MemoryImage(Size), style);
        ProcessResult r = await receiver.RunClientAsync("nbdinfo", "--json", "{uri}");
        r.EnsureSuccess("nbdinfo --json");
        using JsonDocument doc = JsonDocument.Parse(r.StandardOutput);
        Assert.Equal(protocol, doc.RootElement.GetProperty("protocol").GetString());
        JsonElement export = doc.RootElement.GetProperty("exports")[0];
        Assert.Equal(Size, export.GetProperty("export-size").GetInt64());
        // The reference greets oldstyle clients with flags 0; ours carry the real ones (FLUSH included).
        Assert.True(export.GetProperty("can_flush").GetBoolean());
    }

    [Fact]
    public async Task QemuIo_Oldstyle_WritesAndReadsBack()
    {
        var image = new MemoryImage(Size);
        await using Receiver receiver = Receiver.Start(image, NbdHandshakeStyle.Oldstyle);
        ProcessResult r = await receiver.RunClientAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5c 65536 131072", "-c", "read -P 0x5c 65536 131072", "{uri}");
        r.EnsureSuccess("qemu-io");
        byte[] back = new byte[131072];
        await image.ReadAsync(65536, back);
        Assert.All(back, b => Assert.Equal(0x5c, b));
    }

    [Fact]
    public async Task BadSenders_AreDropped_AndTheReceiverKeepsServing()
    {
        await using Receiver receiver = Receiver.Start(new MemoryImage(Size), NbdHandshakeStyle.FixedNewstyle);

        // A message without a descriptor.
        using (Socket s = receiver.ConnectCarrier())
        {
            s.Send("no fd here"u8);
            Assert.Equal(0, await ReceiveUntilClosedAsync(s));
        }

        // A descriptor that is not a socket.
        using (Socket s = receiver.ConnectCarrier())
        using (var file = new FileStream(receiver.Directory.File("not-a-socket"), FileMode.Create))
        {
            FdPassing.Send(s.SafeHandle, "file"u8, file.SafeFileHandle);
            Assert.Equal(0, await ReceiveUntilClosedAsync(s));
        }

        // A sender that connects and leaves.
        using (Socket s = receiver.ConnectCarrier())
        {
            s.Shutdown(SocketShutdown.Both);
        }

        ProcessResult r = await receiver.RunClientAsync("nbdinfo", "--size", "{uri}");
        r.EnsureSuccess("nbdinfo --size after bad senders");
        Assert.Equal(Size.ToString(System.Globalization.CultureInfo.InvariantCulture), r.StandardOutput.Trim());
    }

    [Fact]
    public async Task HandshakeTimeout_SilentSendersAndSilentHandedOverClient_AreClosedAndReported()
    {
        const int Senders = 10;
        var logger = new ListLogger();
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        await using Receiver receiver = Receiver.Start(new MemoryImage(Size), NbdHandshakeStyle.FixedNewstyle, options, logger);
        Socket[] senders = [.. Enumerable.Range(0, Senders).Select(_ => receiver.ConnectCarrier())];
        try
        {
            // A client handed over that never answers the greeting gets the greeting, then a close.
            using Socket client = await receiver.ConnectHandedOverAsync();
            Assert.Equal(18, await RawUnix.ReadUntilClosedAsync(client));

            // Senders that never pass a descriptor are closed too.
            Assert.All(await Task.WhenAll(senders.Select(RawUnix.ReadUntilClosedAsync)), n => Assert.Equal(0, n));
        }
        finally
        {
            Array.ForEach(senders, s => s.Dispose());
        }

        await RawUnix.WaitUntilAsync(() => RawUnix.HandshakeTimeoutsLogged(logger) == Senders + 1, "every drop reported");
        Assert.DoesNotContain(logger.Entries, e => e.EventId is 3 or 23);
    }

    [Fact]
    public async Task HandshakeTimeout_OldstyleHandedOverClient_GreetedAtOnceAndServedPastTheDeadline()
    {
        // Oldstyle negotiation is the greeting alone: once it is sent the client is in transmission, where an idle
        // client is not dropped.
        var logger = new ListLogger();
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(1) };
        await using Receiver receiver = Receiver.Start(new MemoryImage(Size), NbdHandshakeStyle.Oldstyle, options, logger);
        using Socket client = await receiver.ConnectHandedOverAsync();
        byte[] greeting = await RawUnix.ReadExactAsync(client, 152);
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(16)));

        // Idle past the deadline (a wait, not a timing assertion), then a flush is answered.
        await Task.Delay(options.HandshakeTimeout * 2);
        await client.SendAsync(NbdTestClient.Request(0, NbdTestClient.CmdFlush, 5, 0, 0), SocketFlags.None);
        byte[] reply = await RawUnix.ReadExactAsync(client, 16);
        Assert.Equal(NbdTestClient.SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(reply));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
        Assert.Equal(5ul, BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
        Assert.Equal(0, RawUnix.HandshakeTimeoutsLogged(logger));
    }

    private static async Task<int> ReceiveUntilClosedAsync(Socket s)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await s.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token);
    }

    /// <summary>The server's fd receiver plus a broker socket that real clients connect to.</summary>
    private sealed class Receiver : IAsyncDisposable
    {
        private readonly NbdUnixListener _listener;
        private readonly Socket _broker;

        private Receiver(TempDirectory directory, NbdUnixListener listener, Socket broker, string brokerPath)
        {
            Directory = directory;
            _listener = listener;
            _broker = broker;
            BrokerPath = brokerPath;
        }

        public TempDirectory Directory { get; }

        public string BrokerPath { get; }

        public static Receiver Start(IBlockImage image, NbdHandshakeStyle style, NbdServerOptions? options = null, ListLogger? logger = null)
        {
            var directory = new TempDirectory();
            var server = new NbdServer(new NbdExport("tapdisk_client", "fd receiver test", image), options, logger);
            NbdUnixListener listener = NbdUnixListener.StartFdReceiver(directory.File("nbdserver.sock"), server, style);
            string brokerPath = directory.File("broker.sock");
            var broker = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            broker.Bind(new UnixDomainSocketEndPoint(brokerPath));
            broker.Listen(5);
            return new Receiver(directory, listener, broker, brokerPath);
        }

        public Socket ConnectCarrier()
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(_listener.Path));
            return s;
        }

        /// <summary>Connects to the broker and hands the accepted end to the receiver; returns the client's end.</summary>
        public async Task<Socket> ConnectHandedOverAsync()
        {
            Socket client = RawUnix.Connect(BrokerPath);
            using var timeout = new CancellationTokenSource(RawUnix.HangGuard);
            using (Socket accepted = await _broker.AcceptAsync(timeout.Token))
            using (Socket carrier = ConnectCarrier())
            {
                FdPassing.Send(carrier.SafeHandle, "handed over"u8, accepted.SafeHandle);
            }

            return client;
        }

        /// <summary>Runs a client against the broker; the accepted connection is handed to the receiver.</summary>
        public async Task<ProcessResult> RunClientAsync(string tool, params string[] args)
        {
            string uri = $"nbd+unix:///?socket={BrokerPath}";
            string[] argv = [.. args.Select(a => a == "{uri}" ? uri : a)];
            Task<ProcessResult> client = Task.Run(() => ExternalTool.Run(ExternalTool.Require(tool), argv, stdin: null, timeout: TimeSpan.FromMinutes(2)));
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            using (Socket accepted = await _broker.AcceptAsync(timeout.Token))
            using (Socket carrier = ConnectCarrier())
            {
                FdPassing.Send(carrier.SafeHandle, Encoding.ASCII.GetBytes("xapi test"), accepted.SafeHandle);
            }

            return await client;
        }

        public async ValueTask DisposeAsync()
        {
            _broker.Dispose();
            using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _listener.StopAsync(drain.Token);
            await _listener.DisposeAsync();
            Directory.Dispose();
        }
    }
}
