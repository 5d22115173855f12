using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tapdisk.Abi;

namespace Tapdisk.Nbd;

/// <summary>
/// Serves an <see cref="NbdServer"/> on a UNIX stream socket path: either clients connect to it (tapdisk's
/// nbd&lt;pid&gt;.&lt;minor&gt;), or it is an fd receiver (nbdserver[-new]&lt;pid&gt;.&lt;minor&gt;): a peer connects and
/// sends one message carrying an already-connected NBD client's socket, which is then served.
/// </summary>
public sealed class NbdUnixListener : IAsyncDisposable
{
    /// <summary>blktap's fd receivers read one message of at most this size with the descriptor.</summary>
    private const int FdMessageBytes = 16384;

    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly CancellationTokenSource _dropClients = new();
    private readonly Lock _lock = new();
    private readonly HashSet<Task> _connections = [];
    private Socket? _socket;
    private Task _acceptLoop = Task.CompletedTask;
    private int _stopped;

    public NbdUnixListener(string path, NbdServer server)
        : this(path, server, receivesDescriptors: false, NbdHandshakeStyle.FixedNewstyle)
    {
    }

    private NbdUnixListener(string path, NbdServer server, bool receivesDescriptors, NbdHandshakeStyle style)
    {
        ReceivesDescriptors = receivesDescriptors;
        Style = style;
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(server);
        Path = path;
        Server = server;
        _logger = server.Logger;
    }

    public string Path { get; }

    /// <summary>True for an fd receiver: connections carry client sockets instead of being clients.</summary>
    public bool ReceivesDescriptors { get; }

    /// <summary>The handshake clients get.</summary>
    public NbdHandshakeStyle Style { get; }

    public NbdServer Server { get; }

    /// <summary>Clients currently connected.</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_lock)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Creates a listener on <paramref name="path"/> and starts accepting (see <see cref="Listen"/>).</summary>
    public static NbdUnixListener Start(string path, NbdServer server, int? backlog = null)
    {
        var listener = new NbdUnixListener(path, server);
        listener.Listen(backlog);
        return listener;
    }

    /// <summary>
    /// Creates an fd receiver on <paramref name="path"/>: each connection sends one message (up to 16 KiB, an id or
    /// log text) with one descriptor, an NBD client's connected socket, which is served with <paramref name="style"/>.
    /// Unlike the reference, which takes one connection at a time, senders are handled concurrently.
    /// </summary>
    public static NbdUnixListener StartFdReceiver(string path, NbdServer server, NbdHandshakeStyle style, int? backlog = null)
    {
        var listener = new NbdUnixListener(path, server, receivesDescriptors: true, style);
        listener.Listen(backlog);
        return listener;
    }

    /// <summary>
    /// Binds (removing a stale socket file first), listens and starts accepting. The backlog defaults to the largest
    /// the kernel allows (net.core.somaxconn), not the reference's 10 (5 for fd receivers): a burst of non-blocking
    /// clients beyond the backlog fails to connect with EAGAIN.
    /// </summary>
    public void Listen(int? backlog = null)
    {
        if (_socket is not null)
        {
            throw new InvalidOperationException("the listener is already started");
        }

        if (File.Exists(Path))
        {
            // A socket left by a dead process would make bind fail with EADDRINUSE.
            File.Delete(Path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(Path));
            socket.Listen(backlog ?? ListenBacklog.Maximum);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _socket = socket;
        _acceptLoop = AcceptLoopAsync(socket);
        Log.ListenerStarted(_logger, Path);
    }

    /// <summary>
    /// Stops accepting and removes the socket path, then waits for clients to leave. If
    /// <paramref name="cancellationToken"/> fires first, clients are dropped (requests already at the image finish).
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            await _stopAccepting.CancelAsync().ConfigureAwait(false);
            _socket?.Dispose();
            await _acceptLoop.ConfigureAwait(false);
            TryDeletePath();
            Log.ListenerStopped(_logger, Path);
        }

        using (cancellationToken.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), _dropClients))
        {
            while (true)
            {
                Task[] remaining;
                lock (_lock)
                {
                    remaining = [.. _connections];
                }

                if (remaining.Length == 0)
                {
                    break;
                }

                await Task.WhenAll(remaining).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Stops at once, dropping clients.</summary>
    public async ValueTask DisposeAsync()
    {
        await _dropClients.CancelAsync().ConfigureAwait(false);
        await StopAsync().ConfigureAwait(false);
        _stopAccepting.Dispose();
        _dropClients.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopAccepting.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopAccepting.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // ECONNABORTED, EMFILE and the like: keep listening, but do not spin on a persistent error.
                Log.AcceptFailed(_logger, Path, e);
                await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            Task connection = ReceivesDescriptors ? ReceiveAndServeAsync(client) : ServeAsync(client);
            lock (_lock)
            {
                _connections.Add(connection);
            }

            // Registered after the Add, so the removal can never run first.
            _ = connection.ContinueWith(
                (task, state) =>
                {
                    var self = (NbdUnixListener)state!;
                    lock (self._lock)
                    {
                        self._connections.Remove(task);
                    }
                },
                this,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    /// <summary>Takes the one message of an fd-passing peer, closes its connection, and serves the passed socket.</summary>
    private async Task ReceiveAndServeAsync(Socket carrier)
    {
        await Task.Yield();
        Socket? client = null;
        using (carrier)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_dropClients.Token);
            timeout.CancelAfter(Server.Options.HandshakeTimeout);
            byte[] message = new byte[FdMessageBytes];
            try
            {
                while (client is null)
                {
                    // A zero-byte receive waits until the message is readable without consuming it.
                    await carrier.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, timeout.Token).ConfigureAwait(false);
                    int n = FdPassing.TryReceive(carrier.SafeHandle, message, out int fd, out int errno);
                    if (n < 0 && errno is Errno.EAGAIN or Errno.EINTR)
                    {
                        continue;
                    }

                    if (n < 0 || fd < 0)
                    {
                        Log.FdReceiveFailed(_logger, Path, n < 0 ? Errno.Describe(errno) : n == 0 ? "peer closed without sending" : "message carried no descriptor");
                        return;
                    }

                    client = AdoptSocket(fd);
                    if (client is null)
                    {
                        Log.FdReceiveFailed(_logger, Path, "the descriptor is not a stream socket");
                        return;
                    }
                }
            }
            catch (OperationCanceledException) when (!_dropClients.IsCancellationRequested)
            {
                // A sender that never passed its descriptor: counted with the clients that never finished a handshake.
                Server.HandshakeTimeouts.Dropped();
                return;
            }
            catch (OperationCanceledException)
            {
                // The listener is dropping its clients: not a fault.
                return;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Log.FdReceiveFailed(_logger, Path, e.Message);
                return;
            }
        }

        await ServeAsync(client).ConfigureAwait(false);
    }

    private static Socket? AdoptSocket(int fd)
    {
        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        try
        {
            var socket = new Socket(handle);
            if (socket.SocketType == SocketType.Stream)
            {
                return socket;
            }

            socket.Dispose();
            return null;
        }
        catch (SocketException)
        {
            // ENOTSOCK and the like: a file or pipe was passed.
            handle.Dispose();
            return null;
        }
    }

    private async Task ServeAsync(Socket client)
    {
        await Task.Yield();
        var transport = new SocketTransport(client, Server.Options.SendStallTimeout);
        try
        {
            transport.Start();
            await Server.HandleConnectionAsync(transport, Style, _dropClients.Token).ConfigureAwait(false);
            await transport.ShutdownAsync().ConfigureAwait(false);
        }
        finally
        {
            transport.Dispose();
        }
    }

    private void TryDeletePath()
    {
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
            // Teardown: a path we cannot remove is left for the next Start, which unlinks stale sockets.
        }
    }
}
