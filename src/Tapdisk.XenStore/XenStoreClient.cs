using System.Net.Sockets;
using System.Threading.Channels;

namespace Tapdisk.XenStore;

/// <summary>
/// A XenStore client over xenstored's socket or the xenbus device (control-xen.md Part II 5.2). Requests carry their
/// own req_id and may run concurrently; watch events arrive on <see cref="Events"/>. After a lost connection the
/// client reconnects with backoff, registers every watch again (each fires at once) and then posts
/// <see cref="XenStoreEventKind.Reconnected"/>, so the owner can re-read everything; requests made while
/// disconnected fail with <see cref="XenStoreConnectionLostException"/>.
/// </summary>
public sealed partial class XenStoreClient : IAsyncDisposable
{
    private readonly XenStoreClientOptions _options;
    private readonly IReadOnlyList<XenStoreEndpoint> _endpoints;
    private readonly Channel<XenStoreEvent> _events = Channel.CreateUnbounded<XenStoreEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _lock = new();
    private readonly List<(string Path, string Token)> _watches = [];
    private readonly CancellationTokenSource _disposed = new();
    private XenStoreConnection? _connection;
    private Task _reconnecting = Task.CompletedTask;

    private XenStoreClient(XenStoreClientOptions options)
    {
        _options = options;
        _endpoints = options.Endpoints ?? XenStoreEndpoint.DefaultCandidates();
    }

    /// <summary>Watch events and connection changes, in arrival order.</summary>
    public ChannelReader<XenStoreEvent> Events => _events.Reader;

    /// <summary>The endpoint of the current connection; null while disconnected.</summary>
    public XenStoreEndpoint? Endpoint => _connection is { IsClosed: false } c ? c.Endpoint : null;

    /// <summary>Connects to the first endpoint that answers; throws <see cref="XenStoreConnectionLostException"/> if none does.</summary>
    public static async Task<XenStoreClient> ConnectAsync(XenStoreClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        var client = new XenStoreClient(options ?? new XenStoreClientOptions());
        try
        {
            client._connection = await client.OpenAnyAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            client._disposed.Dispose();
            throw;
        }

        return client;
    }

    private async Task<XenStoreConnection> OpenAnyAsync(CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        foreach (XenStoreEndpoint endpoint in _endpoints)
        {
            if (!File.Exists(endpoint.Path))
            {
                failures.Add($"{endpoint}: absent");
                continue;
            }

            try
            {
                return await XenStoreConnection.OpenAsync(endpoint, OnWatchEvent, OnConnectionClosed, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or UnauthorizedAccessException)
            {
                failures.Add($"{endpoint}: {e.Message}");
            }
        }

        throw new XenStoreConnectionLostException("cannot connect to xenstored (" + string.Join("; ", failures) + ")");
    }

    private void OnWatchEvent(string path, string token) => _events.Writer.TryWrite(new XenStoreEvent(XenStoreEventKind.Watch, path, token));

    private void OnConnectionClosed(XenStoreConnection connection, Exception? failure)
    {
        lock (_lock)
        {
            if (_disposed.IsCancellationRequested || !ReferenceEquals(_connection, connection))
            {
                return;
            }

            _events.Writer.TryWrite(XenStoreEvent.Disconnected);
            if (!_options.Reconnect)
            {
                _events.Writer.TryComplete(new XenStoreConnectionLostException("xenstore connection lost", failure ?? new EndOfStreamException()));
                return;
            }

            _reconnecting = Task.Run(ReconnectLoopAsync);
        }
    }

    private async Task ReconnectLoopAsync()
    {
        CancellationToken cancellationToken = _disposed.Token;
        TimeSpan delay = _options.ReconnectMinimumDelay;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                XenStoreConnection connection = await OpenAnyAsync(cancellationToken).ConfigureAwait(false);
                (string Path, string Token)[] watches;
                lock (_lock)
                {
                    watches = [.. _watches];
                }

                // Watches first, then the connection becomes current: a loss before that point is this loop's to
                // retry, a loss after it starts a fresh loop from OnConnectionClosed. Never both.
                foreach ((string path, string token) in watches)
                {
                    await connection.RequestAsync(XenStoreMessageType.Watch, 0, XenStoreConnection.EncodeStrings(path, token), cancellationToken).ConfigureAwait(false);
                }

                lock (_lock)
                {
                    if (connection.IsClosed)
                    {
                        continue;
                    }

                    _connection = connection;
                }

                _events.Writer.TryWrite(XenStoreEvent.Reconnected);
                return;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (XenStoreConnectionLostException)
            {
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.ReconnectMaximumDelay.Ticks));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        XenStoreConnection? connection;
        lock (_lock)
        {
            if (_disposed.IsCancellationRequested)
            {
                return;
            }

            _disposed.Cancel();
            connection = _connection;
            _connection = null;
        }

        connection?.Dispose();
        await _reconnecting.ConfigureAwait(false);
        _events.Writer.TryComplete();
        _disposed.Dispose();
    }
}
