using System.Net.Sockets;

namespace Tapdisk.Control;

/// <summary>
/// The ctl&lt;pid&gt; listener. Unlike the reference (10 connections, then starvation; partial reads corrupting
/// memory), every connection is served concurrently and a request split across reads is reassembled; a client that
/// sends fewer than 544 bytes within the read timeout is closed without a reply, as the reference does.
/// </summary>
public sealed class ControlServer : IAsyncDisposable
{
    private const int EINVAL = 22;

    private readonly Socket _listener;
    private readonly IControlHandler _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly TimeSpan _requestTimeout;
    private Task? _acceptLoop;
    private int _connections;
    private int _stoppedListening;

    private ControlServer(string path, Socket listener, IControlHandler handler, TimeSpan requestTimeout)
    {
        Path = path;
        _listener = listener;
        _handler = handler;
        _requestTimeout = requestTimeout;
    }

    public string Path { get; }

    /// <summary>Connections being served right now.</summary>
    public int ActiveConnections => Volatile.Read(ref _connections);

    /// <summary>
    /// Binds (unlinking a stale socket first, as the reference does) and listens with the largest backlog the kernel
    /// allows: with the reference's 32, a burst of non-blocking clients failed to connect with EAGAIN.
    /// </summary>
    public static ControlServer Listen(string path, IControlHandler handler, TimeSpan? requestTimeout = null)
    {
        File.Delete(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(ListenBacklog.Maximum);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new ControlServer(path, socket, handler, requestTimeout ?? TimeSpan.FromSeconds(10));
    }

    public void Start() => _acceptLoop = Task.Run(AcceptLoopAsync);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested || Volatile.Read(ref _stoppedListening) != 0)
                {
                    return;
                }

                continue;
            }

            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        Interlocked.Increment(ref _connections);
        using var connection = new ControlConnection(client);
        try
        {
            byte[] request = new byte[TapdiskMessage.Size];
            if (!await connection.TryReadExactlyAsync(request, _requestTimeout, _stop.Token).ConfigureAwait(false))
            {
                return;
            }

            TapdiskMessage message = TapdiskMessage.Parse(request);
            if (!message.HasTerminatedPathSlot)
            {
                // control-xen.md 2.4: early rejections carry cookie 0.
                await connection.SendAsync(TapdiskMessage.ErrorReply(0, EINVAL), _stop.Token).ConfigureAwait(false);
                return;
            }

            await _handler.HandleAsync(connection, message, _stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The client went away or we are stopping: nothing to reply to.
        }
        finally
        {
            Interlocked.Decrement(ref _connections);
        }
    }

    /// <summary>
    /// Unlinks the socket path, then closes the listener: no new client can find or reach this server, while the
    /// connections already accepted (the one asking for this, above all) are still served until <see cref="DisposeAsync"/>.
    /// </summary>
    public void StopListening()
    {
        if (Interlocked.Exchange(ref _stoppedListening, 1) != 0)
        {
            return;
        }

        // Unlink first: a client that globbed the path before this finds nothing to connect to, or is refused once
        // the listener is closed; one already queued in the backlog is reset. Either way tap-ctl list skips it.
        try
        {
            File.Delete(Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Teardown: closing the listener below still refuses every new client.
        }

        _listener.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        StopListening();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        _stop.Dispose();
    }
}
