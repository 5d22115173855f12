using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Tapdisk.Storage;
using Microsoft.Extensions.Logging;

namespace Tapdisk.Nbd;

/// <summary>
/// One client: the handshake, then a receive loop that dispatches requests to the I/O workers, whose replies are
/// written in completion order by whichever thread finishes a request. Split by concern into partial files.
/// </summary>
internal sealed partial class NbdConnection : IDisposable, IPassEndListener
{
    private readonly NbdServer _server;
    private readonly NbdServerOptions _options;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly IGatherWriter? _gather;
    private readonly ILogger _logger;
    private readonly long _id;
    private readonly byte[] _header = new byte[NbdProtocol.ExtendedRequestSize];

    private readonly bool _oldstyle;
    private bool _clientNoZeroes;
    private bool _structuredReplies;
    private bool _extendedHeaders;
    private bool _baseAllocation;
    private bool _dirtyBitmap;
    private bool _allocationDepth;
    private NbdExport? _export;

    public NbdConnection(NbdServer server, IDuplexPipe transport, long id, NbdHandshakeStyle style = NbdHandshakeStyle.FixedNewstyle)
    {
        _oldstyle = style == NbdHandshakeStyle.Oldstyle;
        _server = server;
        _options = server.Options;
        _input = transport.Input;
        _output = transport.Output;
        _gather = _output as IGatherWriter;
        _logger = server.Logger;
        _id = id;
        _slots = new SemaphoreSlim(_options.MaxInFlightPerConnection, _options.MaxInFlightPerConnection);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        Log.ConnectionOpened(_logger, _id);
        try
        {
            NbdExport? export;
            using (var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                handshakeTimeout.CancelAfter(_options.HandshakeTimeout);
                try
                {
                    export = await HandshakeAsync(handshakeTimeout.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (handshakeTimeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested
                    && (e is OperationCanceledException || IsTransportFault(e)))
                {
                    // Past the deadline: a pending read was cancelled, or a blocked send failed when the deadline shut
                    // the socket down. Counted, and logged once per burst rather than once per client.
                    _server.HandshakeTimeouts.Dropped();
                    export = null;
                }
            }

            if (export is not null)
            {
                _export = export;
                Log.TransmissionStarted(_logger, _id, export.Name, _extendedHeaders ? "extended" : _structuredReplies ? "compact, structured" : "compact, simple");
                await TransmitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // Cancelled by the owner (server stop): not a fault.
        }
        catch (Exception e) when (IsTransportFault(e))
        {
            Log.PeerReset(_logger, _id, e);
        }
        catch (Exception e)
        {
            // Untrusted input must never take the process down (STYLE.md section 6): log and drop this client.
            Log.ConnectionFailed(_logger, _id, e);
        }
        finally
        {
            await CompleteTransportAsync().ConfigureAwait(false);
            Log.ConnectionClosed(_logger, _id);
        }
    }

    /// <summary>Called once <see cref="RunAsync"/> has completed, when no request is left in flight.</summary>
    public void Dispose() => _slots.Dispose();

    private static bool IsTransportFault(Exception e) =>
        e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException or InvalidOperationException;

    private async ValueTask CompleteTransportAsync()
    {
        try
        {
            await _output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsTransportFault(e))
        {
            // Teardown: the final flush to a vanished peer may fail; nothing is owed to it any more.
        }

        await _input.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Fills <paramref name="destination"/> from the input; false if the peer closed first.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder<>))]
    private async ValueTask<bool> ReadExactAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            int n = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, n).CopyTo(destination.Span);
            destination = destination[n..];
            _input.AdvanceTo(buffer.GetPosition(n));
            if (n == 0 && (result.IsCompleted || result.IsCanceled))
            {
                return false;
            }

            if (!destination.IsEmpty && (result.IsCompleted || result.IsCanceled) && buffer.Length == n)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes without buffering them; false if the peer closed first.</summary>
    private async ValueTask<bool> SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            long n = Math.Min(buffer.Length, count);
            _input.AdvanceTo(buffer.GetPosition(n));
            count -= n;
            if (count > 0 && (result.IsCompleted || result.IsCanceled) && buffer.Length == n)
            {
                return false;
            }
        }

        return true;
    }
}
