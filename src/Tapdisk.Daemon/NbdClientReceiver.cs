using System.Net.Sockets;
using System.Text;
using Tapdisk.Abi;
using Tapdisk.Logging;

namespace Tapdisk.Daemon;

/// <summary>
/// nbdclient&lt;pid&gt;, the fd receiver tapdisk listens on from start-up to exit (control-xen.md 1, data-plane.md 6.1):
/// a peer connects and sends one message (an id, up to 39 characters) carrying a connected socket for the nbd disk
/// type to use as "nbd:&lt;id&gt;". This build's nbd disk type connects by socket path or host:port only, so it does not
/// pretend to stash the socket: each received descriptor is closed at once and the refusal is logged with the id, so
/// the sender's later "nbd:&lt;id&gt;" OPEN failing (ENOENT) is explained in the log. Connections are taken one at a
/// time, as blktap does.
/// </summary>
internal sealed class NbdClientReceiver : IAsyncDisposable
{
    private const int MessageBytes = 16 * 1024;
    private static readonly TimeSpan s_messageTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly ProcessLog _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private NbdClientReceiver(string path, Socket listener, ProcessLog log)
    {
        Path = path;
        _listener = listener;
        _log = log;
        _loop = AcceptLoopAsync();
    }

    public string Path { get; }

    /// <summary>Binds (removing a stale file first) and starts receiving; failures are logged and yield null.</summary>
    public static NbdClientReceiver? TryStart(string path, ProcessLog log)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (File.Exists(path))
            {
                File.Delete(path);
            }

            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(5);
            return new NbdClientReceiver(path, socket, log);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            log.Error($"cannot listen on {path}: {e.Message}; descriptors for the nbd disk type cannot be received");
            return null;
        }
    }

    private async Task AcceptLoopAsync()
    {
        await Task.Yield();
        byte[] message = new byte[MessageBytes];
        while (!_stop.IsCancellationRequested)
        {
            Socket peer;
            try
            {
                peer = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                _log.Warning($"{Path}: accept failed: {e.Message}");
                continue;
            }

            using (peer)
            {
                await ReceiveOneAsync(peer, message).ConfigureAwait(false);
            }
        }
    }

    private async Task ReceiveOneAsync(Socket peer, byte[] message)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(s_messageTimeout);
        try
        {
            while (true)
            {
                // A zero-byte receive waits until the message is readable without consuming it.
                await peer.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, timeout.Token).ConfigureAwait(false);
                int n = FdPassing.TryReceive(peer.SafeHandle, message, out int fd, out int errno);
                if (n < 0 && errno is Errno.EAGAIN or Errno.EINTR)
                {
                    continue;
                }

                if (n < 0)
                {
                    _log.Warning($"{Path}: receive failed: {Errno.Describe(errno)}");
                    return;
                }

                string id = Encoding.UTF8.GetString(message, 0, n).TrimEnd('\0');
                if (fd < 0)
                {
                    _log.Warning($"{Path}: a message ('{id}') without a descriptor; ignored");
                    return;
                }

                using (new SafeSocketHandle(fd, ownsHandle: true))
                {
                    // Closed here, never stashed: the nbd disk type of this build cannot use a passed socket.
                    _log.Error($"{Path}: refused the socket passed as '{id}': this tapdisk's nbd disk type connects by socket path or host:port only, so 'nbd:{id}' cannot be opened; the descriptor was closed");
                }

                return;
            }
        }
        catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
        {
            _log.Warning($"{Path}: a peer connected but sent nothing within {s_messageTimeout.TotalSeconds} s; closed");
        }
        catch (OperationCanceledException)
        {
            // Stopping: not a fault.
        }
        catch (SocketException e)
        {
            _log.Warning($"{Path}: {e.Message}");
        }
    }

    /// <summary>At exit: stop receiving and remove the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _loop.ConfigureAwait(false);
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
            // Teardown: already gone.
        }

        _stop.Dispose();
    }
}
