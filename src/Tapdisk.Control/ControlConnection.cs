using System.Net.Sockets;

namespace Tapdisk.Control;

/// <summary>One accepted control connection: the request has been read; handlers read trailers and send replies.</summary>
public sealed class ControlConnection : IDisposable
{
    private readonly Socket _socket;

    internal ControlConnection(Socket socket)
    {
        _socket = socket;
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes (OPEN/RESUME trailers); false on EOF or timeout.</summary>
    public async Task<bool> TryReadExactlyAsync(Memory<byte> buffer, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        int got = 0;
        try
        {
            while (got < buffer.Length)
            {
                int n = await _socket.ReceiveAsync(buffer[got..], SocketFlags.None, cts.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    return false;
                }

                got += n;
            }

            return true;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
            return false;
        }
    }

    public Task SendAsync(TapdiskMessage reply, CancellationToken cancellationToken = default) => SendAsync(reply.Bytes.ToArray(), cancellationToken);

    public async Task SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken = default)
    {
        int sent = 0;
        while (sent < bytes.Length)
        {
            sent += await _socket.SendAsync(bytes[sent..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>True once the client has closed its end (a PAUSE whose caller went away, for example).</summary>
    public bool IsPeerClosed
    {
        get
        {
            try
            {
                return _socket.Poll(0, SelectMode.SelectRead) && _socket.Available == 0;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return true;
            }
        }
    }

    public void Dispose() => _socket.Dispose();
}
