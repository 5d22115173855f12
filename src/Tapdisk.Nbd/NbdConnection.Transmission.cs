using System.Buffers.Binary;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Nbd;

/// <summary>The receive side of transmission: parse, read payload, pass the VBD's gate, dispatch within its share.</summary>
internal sealed partial class NbdConnection
{
    private readonly SemaphoreSlim _slots;
    private readonly Stack<NbdRequest> _freeRequests = new();
    private readonly Lock _freeLock = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _stopReceiving;

    // Payload bytes held by this connection's requests, and the receive loop's wake-up while it waits for room.
    private long _bufferedBytes;
    private TaskCompletionSource? _bytesFreed;
    private CancellationToken _token;

    // Read requests whose reply is not yet written and flushed, plus one held by the receive loop while it runs;
    // whoever brings it to zero lets transmission finish (DISC drains).
    private int _outstanding = 1;

    private async Task TransmitAsync(CancellationToken cancellationToken)
    {
        using var sendFailed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _stopReceiving = sendFailed;
        _token = sendFailed.Token;
        try
        {
            // An empty flush hands the output this token before any reply: a send of transmission blocked on a peer
            // that stopped reading then ends when it is cancelled, even one the output makes itself (a full list).
            await _output.FlushAsync(_token).ConfigureAwait(false);
            await ReceiveLoopAsync(_token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopped by the owner or because the peer stopped taking replies.
        }
        catch (Exception e) when (IsTransportFault(e))
        {
            Log.PeerReset(_logger, _id, e);
        }
        finally
        {
            ReleaseOutstanding();
            await _drained.Task.ConfigureAwait(false);
        }
    }

    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        BlockBackend backend = _export!.Backend;

        // The header size is fixed for the connection by negotiation (shared/spec/data-plane.md Appendix A).
        Memory<byte> header = _header.AsMemory(0, _extendedHeaders ? ExtendedRequestSize : RequestSize);
        uint expectedMagic = _extendedHeaders ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC;
        while (true)
        {
            if (!await ReadExactAsync(header, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            uint magic = BinaryPrimitives.ReadUInt32BigEndian(_header);
            if (magic != expectedMagic)
            {
                // Nothing after a bad magic can be framed: the only safe answer is to close.
                Log.ProtocolViolation(_logger, _id, $"bad request magic 0x{magic:x8}");
                return;
            }

            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(4));
            ushort command = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(6));
            if (command == NBD_CMD_DISC)
            {
                return;
            }

            ulong length = _extendedHeaders
                ? BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(24))
                : BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(24));

            // Bytes that follow the header: a WRITE's data, or (extended headers, PAYLOAD_LEN) a payload for a command
            // that takes none here (BLOCK_STAT_PAYLOAD is not offered). More than a compact header could announce
            // cannot be skipped in reasonable time: a client claiming that much is lying, so close.
            bool strayPayload = _extendedHeaders && command != NBD_CMD_WRITE && (flags & NBD_CMD_FLAG_PAYLOAD_LEN) != 0;
            if ((command == NBD_CMD_WRITE || strayPayload) && length > uint.MaxValue)
            {
                Log.ProtocolViolation(_logger, _id, $"command {command} announces a {length}-byte payload");
                return;
            }

            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
            NbdRequest request = RentRequest();
            request.Flags = flags;
            request.Command = command;
            request.Handle = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(8));
            request.OffsetBytes = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(16));
            request.LengthBytes = length;
            Interlocked.Increment(ref _outstanding);
            bool handedOff = false;
            try
            {
                int maxBytes = MaxRequestBytes(backend.Image);
                if (strayPayload || (command is NBD_CMD_READ or NBD_CMD_WRITE && request.LengthBytes > (ulong)maxBytes))
                {
                    // Too big to serve (or a payload nothing here takes): the payload is still consumed (never
                    // buffered) so the stream stays in sync.
                    if ((command == NBD_CMD_WRITE || strayPayload) && !await SkipAsync((long)request.LengthBytes, cancellationToken).ConfigureAwait(false))
                    {
                        return;
                    }

                    request.Error = NBD_EINVAL;
                    handedOff = true;
                    QueueReply(request);
                    continue;
                }

                if (command is NBD_CMD_READ or NBD_CMD_WRITE && request.LengthBytes != 0)
                {
                    await ReserveBytesAsync((long)request.LengthBytes, cancellationToken).ConfigureAwait(false);
                    request.ReservedBytes = (long)request.LengthBytes;
                    request.Buffer = AlignedBufferPool.Shared.Rent((int)request.LengthBytes);
                }

                if (command == NBD_CMD_WRITE && !await ReadExactAsync(request.Data, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }

                // The gate: while the VBD is paused this waits, and no more requests are read from this client.
                await backend.EnterAsync(cancellationToken).ConfigureAwait(false);
                handedOff = true;
                if (backend.MayRunInline(OperationOf(command), (long)Math.Min(request.OffsetBytes, long.MaxValue), (long)Math.Min(request.LengthBytes, long.MaxValue), alone: false))
                {
                    // No layer blocks this thread (its I/O goes through this thread's io_uring loop): start it here.
                    Execute(request);
                }
                else
                {
                    backend.Dispatch(request);
                }
            }
            finally
            {
                if (!handedOff)
                {
                    // The client vanished or the connection was cancelled before the request could run.
                    FailWithoutReply(request);
                }
            }
        }
    }

    /// <summary>The block operation an NBD command asks the stack for (what decides whether it may block this thread).</summary>
    private static BlockOperation OperationOf(ushort command) => command switch
    {
        NBD_CMD_READ => BlockOperation.Read,
        NBD_CMD_WRITE => BlockOperation.Write,
        NBD_CMD_FLUSH => BlockOperation.Flush,
        NBD_CMD_TRIM => BlockOperation.Trim,
        NBD_CMD_WRITE_ZEROES => BlockOperation.Zero,
        _ => BlockOperation.Query,
    };

    /// <summary>Waits until the payload fits the connection's buffer budget (or nothing is buffered), then counts it.</summary>
    private ValueTask ReserveBytesAsync(long bytes, CancellationToken cancellationToken)
    {
        long buffered = Volatile.Read(ref _bufferedBytes);
        if (buffered == 0 || buffered + bytes <= _options.MaxBufferedBytesPerConnection)
        {
            Interlocked.Add(ref _bufferedBytes, bytes);
            return ValueTask.CompletedTask;
        }

        return WaitForBytesAsync(bytes, cancellationToken);
    }

    private async ValueTask WaitForBytesAsync(long bytes, CancellationToken cancellationToken)
    {
        // Only the receive loop reserves, so there is one waiter at most. The Exchange is a full fence: either the
        // releaser sees this signal, or this thread sees its release in the count.
        while (true)
        {
            var freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Interlocked.Exchange(ref _bytesFreed, freed);
            long buffered = Volatile.Read(ref _bufferedBytes);
            if (buffered == 0 || buffered + bytes <= _options.MaxBufferedBytesPerConnection)
            {
                Interlocked.Add(ref _bufferedBytes, bytes);
                return;
            }

            await freed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private NbdRequest RentRequest()
    {
        lock (_freeLock)
        {
            if (_freeRequests.TryPop(out NbdRequest? request))
            {
                return request;
            }
        }

        return new NbdRequest(this);
    }

    private void ReturnRequest(NbdRequest request)
    {
        if (request.Buffer is not null)
        {
            AlignedBufferPool.Shared.Return(request.Buffer);
        }

        if (request.ReservedBytes != 0)
        {
            Interlocked.Add(ref _bufferedBytes, -request.ReservedBytes);
            Interlocked.Exchange(ref _bytesFreed, null)?.TrySetResult();
        }

        request.Reset();
        lock (_freeLock)
        {
            _freeRequests.Push(request);
        }

        _slots.Release();
    }

    /// <summary>The client vanished mid-request: nothing to answer, just recycle.</summary>
    private void FailWithoutReply(NbdRequest request)
    {
        ReturnRequest(request);
        ReleaseOutstanding();
    }

    private void ReleaseOutstanding()
    {
        if (Interlocked.Decrement(ref _outstanding) == 0)
        {
            _drained.TrySetResult();
        }
    }
}
