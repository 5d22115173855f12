using System.Net.Sockets;
using System.Text;

namespace Tapdisk.XenStore;

/// <summary>
/// One open connection to xenstored. Replies and watch events interleave in either order (control-xen.md Part II
/// 5.2), so one reader demultiplexes: replies by req_id to the waiting request, watch events to a callback. The
/// connection is never reopened; <see cref="XenStoreClient"/> makes a new one after a loss.
/// </summary>
internal sealed class XenStoreConnection : IDisposable
{
    private readonly Stream _stream;
    private readonly Lock _lock = new();
    private readonly Dictionary<uint, TaskCompletionSource<XenStoreReply>> _pending = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Action<string, string> _onWatchEvent;
    private readonly Action<XenStoreConnection, Exception?> _onClosed;
    private uint _lastRequestId;
    private bool _closed;

    private XenStoreConnection(XenStoreEndpoint endpoint, Stream stream, Action<string, string> onWatchEvent, Action<XenStoreConnection, Exception?> onClosed)
    {
        Endpoint = endpoint;
        _stream = stream;
        _onWatchEvent = onWatchEvent;
        _onClosed = onClosed;
    }

    public XenStoreEndpoint Endpoint { get; }

    public bool IsClosed
    {
        get
        {
            lock (_lock)
            {
                return _closed;
            }
        }
    }

    /// <summary>Opens the endpoint and starts reading; throws IOException/SocketException if it cannot be opened.</summary>
    public static async Task<XenStoreConnection> OpenAsync(XenStoreEndpoint endpoint, Action<string, string> onWatchEvent, Action<XenStoreConnection, Exception?> onClosed, CancellationToken cancellationToken)
    {
        Stream stream;
        if (endpoint.IsDevice)
        {
            // bufferSize 0: every Write is one write(2), so the kernel sees each message whole.
            stream = new FileStream(endpoint.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0);
        }
        else
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(endpoint.Path), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            stream = new NetworkStream(socket, ownsSocket: true);
        }

        var connection = new XenStoreConnection(endpoint, stream, onWatchEvent, onClosed);
        _ = Task.Run(connection.ReadLoopAsync, CancellationToken.None);
        return connection;
    }

    /// <summary>Sends one request and waits for the reply with the same req_id.</summary>
    public async Task<XenStoreReply> RequestAsync(XenStoreMessageType type, uint transactionId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.Length > XenStoreHeader.PayloadMax)
        {
            throw new ArgumentException($"xenstore payload of {payload.Length} bytes exceeds {XenStoreHeader.PayloadMax}", nameof(payload));
        }

        var reply = new TaskCompletionSource<XenStoreReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        uint requestId;
        lock (_lock)
        {
            if (_closed)
            {
                throw new XenStoreConnectionLostException();
            }

            // Never 0: xenstored sends watch events with req_id 0, which keeps traces unambiguous.
            requestId = ++_lastRequestId == 0 ? ++_lastRequestId : _lastRequestId;
            _pending[requestId] = reply;
        }

        byte[] message = new byte[XenStoreHeader.Size + payload.Length];
        new XenStoreHeader(type, requestId, transactionId, (uint)payload.Length).Write(message);
        payload.Span.CopyTo(message.AsSpan(XenStoreHeader.Size));
        try
        {
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(message, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }

            using (cancellationToken.Register(static state => ((TaskCompletionSource<XenStoreReply>)state!).TrySetCanceled(), reply))
            {
                return await reply.Task.ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException && e is not XenStoreConnectionLostException)
        {
            Close(e);
            throw new XenStoreConnectionLostException($"xenstore connection ({Endpoint}) lost: {e.Message}", e);
        }
        finally
        {
            lock (_lock)
            {
                _pending.Remove(requestId);
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        byte[] header = new byte[XenStoreHeader.Size];
        Exception? failure = null;
        try
        {
            while (true)
            {
                if (await _stream.ReadAtLeastAsync(header, header.Length, throwOnEndOfStream: false).ConfigureAwait(false) < header.Length)
                {
                    break;
                }

                XenStoreHeader h = XenStoreHeader.Read(header);
                if (h.Length > XenStoreHeader.PayloadMax)
                {
                    // A peer that breaks the framing cannot be resynchronised: drop the connection.
                    failure = new InvalidDataException($"xenstore message of {h.Length} bytes exceeds {XenStoreHeader.PayloadMax}");
                    break;
                }

                byte[] payload = h.Length == 0 ? [] : new byte[h.Length];
                if (await _stream.ReadAtLeastAsync(payload, payload.Length, throwOnEndOfStream: false).ConfigureAwait(false) < payload.Length)
                {
                    break;
                }

                if (h.Type == XenStoreMessageType.WatchEvent)
                {
                    DeliverWatchEvent(payload);
                    continue;
                }

                TaskCompletionSource<XenStoreReply>? waiter;
                lock (_lock)
                {
                    _pending.TryGetValue(h.RequestId, out waiter);
                }

                // A reply nobody waits for (the request was cancelled) is dropped.
                waiter?.TrySetResult(new XenStoreReply(h.Type, payload));
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            failure = e;
        }

        Close(failure);
    }

    private void DeliverWatchEvent(byte[] payload)
    {
        // "path\0token\0"; anything else is not an event we can route, so it is ignored.
        ReadOnlySpan<byte> span = payload;
        int first = span.IndexOf((byte)0);
        if (first < 0)
        {
            return;
        }

        ReadOnlySpan<byte> rest = span[(first + 1)..];
        int second = rest.IndexOf((byte)0);
        string path = Encoding.UTF8.GetString(span[..first]);
        string token = Encoding.UTF8.GetString(second < 0 ? rest : rest[..second]);
        _onWatchEvent(path, token);
    }

    private void Close(Exception? failure)
    {
        List<TaskCompletionSource<XenStoreReply>> waiters;
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            waiters = [.. _pending.Values];
            _pending.Clear();
        }

        _stream.Dispose();
        foreach (TaskCompletionSource<XenStoreReply> waiter in waiters)
        {
            waiter.TrySetException(new XenStoreConnectionLostException($"xenstore connection ({Endpoint}) lost", failure ?? new EndOfStreamException()));
        }

        _onClosed(this, failure);
    }

    /// <summary>Closes the connection without reporting it as lost to the owner's reconnect logic.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            foreach (TaskCompletionSource<XenStoreReply> waiter in _pending.Values)
            {
                waiter.TrySetException(new XenStoreConnectionLostException("xenstore connection closed"));
            }

            _pending.Clear();
        }

        _stream.Dispose();
        _writeLock.Dispose();
    }

    internal static byte[] EncodeStrings(params ReadOnlySpan<string> parts)
    {
        int length = 0;
        foreach (string part in parts)
        {
            length += Encoding.UTF8.GetByteCount(part) + 1;
        }

        byte[] payload = new byte[length];
        int offset = 0;
        foreach (string part in parts)
        {
            offset += Encoding.UTF8.GetBytes(part, payload.AsSpan(offset));
            payload[offset++] = 0;
        }

        return payload;
    }
}
