using System.Net.Sockets;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Control.Tests;

public sealed class ControlServerTests : IDisposable
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = TempDirectory.ForSockets();

    [Fact]
    public async Task Request_PathSlotWithoutNul_EarlyErrorWithCookie0()
    {
        var handler = new PidHandler();
        await using ControlServer server = Start(handler);
        var request = new TapdiskMessage(TapdiskMessageType.Pid, 7);
        byte[] bytes = request.Bytes.ToArray();
        bytes.AsSpan(20, 256).Fill((byte)'A');

        using Socket client = Connect(server);
        client.Send(bytes);
        TapdiskMessage reply = await ReceiveAsync(client);

        Assert.Equal(TapdiskMessageType.Error, reply.Type);
        Assert.Equal(0, reply.Cookie);
        Assert.Equal(22, reply.ResponseError);
        Assert.Equal(0, handler.Calls);
    }

    [Fact]
    public async Task Request_SplitAcrossWrites_IsServed()
    {
        await using ControlServer server = Start(new PidHandler());
        byte[] bytes = new TapdiskMessage(TapdiskMessageType.Pid, 3).Bytes.ToArray();

        using Socket client = Connect(server);
        foreach ((int start, int length) in new[] { (0, 1), (1, 7), (8, 300), (308, 236) })
        {
            client.Send(bytes, start, length, SocketFlags.None);
            await Task.Delay(50);
        }

        TapdiskMessage reply = await ReceiveAsync(client);

        Assert.Equal(TapdiskMessageType.PidResponse, reply.Type);
        Assert.Equal(3, reply.Cookie);
        Assert.Equal(4242, reply.Pid);
    }

    [Fact]
    public async Task Request_TruncatedThenClosed_NoReplyAndServerSurvives()
    {
        var handler = new PidHandler();
        await using ControlServer server = Start(handler);

        using (Socket partial = Connect(server))
        {
            partial.Send(new byte[100]);
            partial.Shutdown(SocketShutdown.Send);
            byte[] buffer = new byte[TapdiskMessage.Size];
            int n = await partial.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(s_hangGuard);
            Assert.Equal(0, n);
        }

        using ControlClient client = ControlClient.ConnectPath(server.Path, s_hangGuard);
        client.Send(new TapdiskMessage(TapdiskMessageType.Pid, 0));
        TapdiskMessage reply = client.Receive();

        Assert.Equal(4242, reply.Pid);
        Assert.Equal(1, handler.Calls);
    }

    [Fact]
    public async Task IdleConnections_DoNotStarveAnotherClient()
    {
        await using ControlServer server = Start(new PidHandler());
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 20; i++)
            {
                idle.Add(Connect(server));
            }

            using ControlClient client = ControlClient.ConnectPath(server.Path, s_hangGuard);
            client.Send(new TapdiskMessage(TapdiskMessageType.Pid, 0));
            TapdiskMessage reply = client.Receive();

            Assert.Equal(4242, reply.Pid);
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task Listen_BurstOfNonBlockingConnects_AllConnectAndAreServed()
    {
        // The reference's backlog of 32 made most of such a burst fail at once with EAGAIN.
        const int Clients = 500;
        var handler = new PidHandler();
        await using ControlServer server = Start(handler);
        (List<Socket> clients, List<SocketError> failures) = UnixConnectBurst.Connect(server.Path, Clients);
        try
        {
            Assert.Empty(failures);

            // Every one is served: a PID request gets its reply.
            for (int i = 0; i < Clients; i++)
            {
                await clients[i].SendAsync(new TapdiskMessage(TapdiskMessageType.Pid, (ushort)i).Bytes.ToArray(), SocketFlags.None);
            }

            TapdiskMessage[] replies = await Task.WhenAll(clients.Select(ReceiveAsync));
            Assert.All(replies, r => Assert.Equal(4242, r.Pid));
            Assert.Equal(Enumerable.Range(0, Clients), replies.Select(r => (int)r.Cookie));
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }

        // And all are closed cleanly.
        using var guard = new CancellationTokenSource(s_hangGuard);
        while (server.ActiveConnections != 0)
        {
            await Task.Delay(20, guard.Token);
        }

        Assert.Equal(Clients, handler.Calls);
    }

    [Fact]
    public void Client_MissingSocket_Enoent()
    {
        ControlException e = Assert.Throws<ControlException>(() => ControlClient.ConnectPath(_dir.File("ctl1")));

        Assert.Equal(2, e.Errno);
    }

    [Fact]
    public void Client_StaleSocket_Econnrefused()
    {
        string path = _dir.File("ctl2");
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // .NET unlinks a socket file it bound when the socket is disposed: move it away first, as a killed
            // tapdisk leaves its ctl<pid> behind.
            s.Bind(new UnixDomainSocketEndPoint(_dir.File("bound")));
            File.Move(_dir.File("bound"), path);
        }

        ControlException e = Assert.Throws<ControlException>(() => ControlClient.ConnectPath(path));

        Assert.Equal(111, e.Errno);
    }

    [Fact]
    public async Task StopListening_BeforeReply_PathGoneNewClientsRefused_AcceptedConnectionsServed()
    {
        var handler = new StopListeningHandler();
        await using ControlServer server = Start(handler);
        handler.Server = server;
        using Socket accepted = Connect(server);
        using (var guard = new CancellationTokenSource(s_hangGuard))
        {
            while (server.ActiveConnections == 0)
            {
                await Task.Delay(10, guard.Token);
            }
        }

        using Socket stopping = Connect(server);
        stopping.Send(new TapdiskMessage(TapdiskMessageType.Detach, 2).Bytes.ToArray());
        TapdiskMessage reply = await ReceiveAsync(stopping);

        // By the time the reply is here, nothing is left to find or to connect to.
        Assert.Equal(TapdiskMessageType.DetachResponse, reply.Type);
        Assert.False(File.Exists(server.Path), "socket path still exists when the reply arrived");
        ControlException e = Assert.Throws<ControlException>(() => ControlClient.ConnectPath(server.Path));
        Assert.Equal(2, e.Errno);

        // A connection accepted before the stop still gets its answer.
        accepted.Send(new TapdiskMessage(TapdiskMessageType.Pid, 1).Bytes.ToArray());
        Assert.Equal(TapdiskMessageType.PidResponse, (await ReceiveAsync(accepted)).Type);
    }

    public void Dispose() => _dir.Dispose();

    private ControlServer Start(IControlHandler handler)
    {
        ControlServer server = ControlServer.Listen(_dir.File("ctl4242"), handler);
        server.Start();
        return server;
    }

    private static Socket Connect(ControlServer server)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(server.Path));
        return s;
    }

    private static async Task<TapdiskMessage> ReceiveAsync(Socket s)
    {
        byte[] buffer = new byte[TapdiskMessage.Size];
        int got = 0;
        while (got < buffer.Length)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None).AsTask().WaitAsync(s_hangGuard);
            Assert.True(n > 0, $"EOF after {got} bytes");
            got += n;
        }

        return TapdiskMessage.Parse(buffer);
    }

    /// <summary>PID answers; DETACH stops the server listening before it answers, as the daemon's last DETACH does.</summary>
    private sealed class StopListeningHandler : IControlHandler
    {
        public ControlServer? Server { get; set; }

        public Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
        {
            if (request.Type == TapdiskMessageType.Detach)
            {
                Server!.StopListening();
                return connection.SendAsync(new TapdiskMessage(TapdiskMessageType.DetachResponse, request.Cookie), cancellationToken);
            }

            return connection.SendAsync(new TapdiskMessage(TapdiskMessageType.PidResponse, request.Cookie) { Pid = 4242 }, cancellationToken);
        }
    }

    private sealed class PidHandler : IControlHandler
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return connection.SendAsync(new TapdiskMessage(TapdiskMessageType.PidResponse, request.Cookie) { Pid = 4242 }, cancellationToken);
        }
    }
}
