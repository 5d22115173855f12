using System.Buffers;
using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Nbd;

/// <summary>
/// The send side. There is no send thread: the thread that finishes a request (normally its I/O worker) writes the
/// reply itself, so a queue-depth-1 request costs no wakeup between its I/O and its reply. One thread at a time owns
/// the PipeWriter; a reply finished while another thread owns it is queued, and the owner writes it before letting go
/// (it flushes once when its queue runs dry, so replies finished together go out in one send).
/// </summary>
internal sealed partial class NbdConnection
{
    private const int FlushThresholdBytes = 256 * 1024;

    // Replies whose data the output sends from the request's own buffer: more than this many and it is flushed, so a
    // burst of completions does not hold every buffer of the connection.
    private const int HeldRepliesMax = 64;
    private readonly ConcurrentQueue<NbdRequest> _pendingReplies = new();

    // Requests whose data is listed in the output and not sent yet: returned after the flush that sends it. Only the
    // writer's owner touches these.
    private readonly List<NbdRequest> _held = new(HeldRepliesMax);
    private bool _holdCurrent;

    // The header of the data reply being written (a chunk header plus its offset at most); only the writer's owner
    // touches it.
    private readonly byte[] _replyHeader = new byte[ExtendedReplySize + 8];
    private int _replyWriter;
    private int _writeAtPassEnd;
    private long _unflushedBytes;
    private bool _sendFailed;

    /// <summary>
    /// Queues a finished request's reply, and writes it (with any others queued) unless another thread is. A reply
    /// finished by a completion on an I/O loop waits for the end of that loop's pass, so the replies of requests that
    /// completed together leave in one send (at queue depth 32 a pass often completes several).
    /// </summary>
    private void QueueReply(NbdRequest request)
    {
        _pendingReplies.Enqueue(request);
        IoLoop? loop = IoLoop.Current;
        if (loop is { InPass: true })
        {
            if (Interlocked.Exchange(ref _writeAtPassEnd, 1) == 0)
            {
                loop.AtPassEnd(this);
            }

            return;
        }

        WritePendingReplies();
    }

    /// <summary>The end of the pass that finished replies: they go out now, together.</summary>
    void IPassEndListener.OnPassEnd()
    {
        Interlocked.Exchange(ref _writeAtPassEnd, 0);
        WritePendingReplies();
    }

    private void WritePendingReplies()
    {
        // Pairs with the release in WriteRepliesAsync: either that owner sees our item after letting go, or we see
        // the writer free and take it.
        if (Interlocked.CompareExchange(ref _replyWriter, 1, 0) != 0)
        {
            return;
        }

        ValueTask writing = WriteRepliesAsync();
        if (writing.IsCompleted)
        {
            writing.GetAwaiter().GetResult();
        }
        else
        {
            // The peer is not taking data as fast as we send it; the writer finishes (and lets go) asynchronously.
            _ = writing.AsTask();
        }
    }

    /// <summary>Run by the owner of the writer (never faults); lets go when no reply is left to write.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteRepliesAsync()
    {
        while (true)
        {
            int written = 0;
            while (_pendingReplies.TryDequeue(out NbdRequest? request))
            {
                if (!_sendFailed)
                {
                    try
                    {
                        await WriteReplyAsync(request).ConfigureAwait(false);
                    }
                    catch (Exception e) when (IsTransportFault(e) || e is OperationCanceledException)
                    {
                        FailSend(e);
                    }
                }

                // Its buffer is still listed in the output: it goes back with the flush that sends it.
                if (_holdCurrent && !_sendFailed)
                {
                    _held.Add(request);
                }
                else
                {
                    ReturnRequest(request);
                }

                _holdCurrent = false;
                written++;
                if (_held.Count >= HeldRepliesMax && !_sendFailed)
                {
                    await FlushOrFailAsync().ConfigureAwait(false);
                }
            }

            if (!_sendFailed && _unflushedBytes > 0)
            {
                await FlushOrFailAsync().ConfigureAwait(false);
            }

            // Nothing may stay listed once the writer is let go (a failed send discarded it).
            ReturnHeld();

            // Let go of the writer before the last count: at zero the connection completes the PipeWriter.
            Interlocked.Exchange(ref _replyWriter, 0);
            for (; written > 0; written--)
            {
                ReleaseOutstanding();
            }

            // A reply queued after our last TryDequeue found the writer taken and left it to us.
            if (_pendingReplies.IsEmpty || Interlocked.CompareExchange(ref _replyWriter, 1, 0) != 0)
            {
                return;
            }
        }
    }

    private async ValueTask FlushOrFailAsync()
    {
        try
        {
            await FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsTransportFault(e) || e is OperationCanceledException)
        {
            FailSend(e);
        }
    }

    private void ReturnHeld()
    {
        foreach (NbdRequest request in _held)
        {
            ReturnRequest(request);
        }

        _held.Clear();
    }

    private void FailSend(Exception e)
    {
        // The peer stopped taking replies: stop reading its requests too; the rest are recycled unanswered. What the
        // output still lists is dropped first, so the held buffers can go back to their pools.
        _sendFailed = true;
        _gather?.Discard();
        ReturnHeld();
        if (e is not OperationCanceledException)
        {
            Log.PeerReset(_logger, _id, e);
        }

        _stopReceiving!.Cancel();
    }

    private async ValueTask FlushAsync()
    {
        _unflushedBytes = 0;
        FlushResult result;
        try
        {
            result = await _output.FlushAsync(_token).ConfigureAwait(false);
        }
        finally
        {
            // Sent (or failed, and the output dropped it): the held buffers are no longer read by the output.
            ReturnHeld();
        }

        if (result.IsCompleted || result.IsCanceled)
        {
            throw new IOException("the peer stopped reading replies");
        }

        // The reply being written, if its data was appended, has just been sent too: nothing to hold it for.
        _holdCurrent = false;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteReplyAsync(NbdRequest request)
    {
        switch (request.Command)
        {
            case NBD_CMD_READ when request.Error == 0:
                if (!_structuredReplies)
                {
                    FormatSimpleReply(_replyHeader, request.Handle, 0);
                    await WriteDataReplyAsync(SimpleReplySize, request.Data).ConfigureAwait(false);
                }
                else if (request.LengthBytes == 0)
                {
                    WriteChunkHeader(request, NBD_REPLY_TYPE_NONE, 0);
                }
                else if (request.Sparse)
                {
                    await WriteSparseReadAsync(request).ConfigureAwait(false);
                }
                else
                {
                    await WriteDataChunkAsync(request, request.OffsetBytes, request.Data, NBD_REPLY_FLAG_DONE).ConfigureAwait(false);
                }

                break;

            case NBD_CMD_BLOCK_STATUS when request.Error == 0:
                // One chunk per negotiated context; the last one carries DONE.
                if (_baseAllocation)
                {
                    WriteBlockStatus(request, BaseAllocationContextId, request.Extents, _dirtyBitmap || _allocationDepth ? (ushort)0 : NBD_REPLY_FLAG_DONE);
                }

                if (_dirtyBitmap)
                {
                    WriteBlockStatus(request, DirtyBitmapContextId, request.DirtyExtents, _allocationDepth ? (ushort)0 : NBD_REPLY_FLAG_DONE);
                }

                if (_allocationDepth)
                {
                    WriteBlockStatus(request, AllocationDepthContextId, request.DepthExtents, NBD_REPLY_FLAG_DONE);
                }

                break;

            case NBD_CMD_READ or NBD_CMD_BLOCK_STATUS when _structuredReplies:
                WriteErrorChunk(request, request.Error);
                break;

            case not NBD_CMD_READ when _extendedHeaders:
                // Extended headers have no simple reply: success is an empty chunk, failure an ERROR chunk.
                if (request.Error == 0)
                {
                    WriteChunkHeader(request, NBD_REPLY_TYPE_NONE, 0);
                }
                else
                {
                    WriteErrorChunk(request, request.Error);
                }

                break;

            default:
                WriteSimpleReply(request.Handle, request.Error);
                break;
        }

        if (_unflushedBytes >= FlushThresholdBytes)
        {
            await FlushAsync().ConfigureAwait(false);
        }
    }

    /// <summary>An OFFSET_DATA chunk: its header and offset, then <paramref name="data"/>.</summary>
    private ValueTask WriteDataChunkAsync(NbdRequest request, ulong offset, ReadOnlyMemory<byte> data, ushort flags)
    {
        int headerSize = FormatChunkHeader(_replyHeader, request, NBD_REPLY_TYPE_OFFSET_DATA, (ulong)(8 + data.Length), flags);
        BinaryPrimitives.WriteUInt64BigEndian(_replyHeader.AsSpan(headerSize), offset);
        return WriteDataReplyAsync(headerSize + 8, data);
    }

    /// <summary>Writes the first <paramref name="headerLength"/> bytes of <see cref="_replyHeader"/>, then the data.</summary>
    private async ValueTask WriteDataReplyAsync(int headerLength, ReadOnlyMemory<byte> data)
    {
        _output.Write(_replyHeader.AsSpan(0, headerLength));
        _unflushedBytes += headerLength;
        if (_gather is not null)
        {
            // Sent from the request's buffer with the replies around it: no copy (which on a busy 2-core host cost
            // more than the send). The request is held until that send.
            _gather.Append(data);
            _unflushedBytes += data.Length;
            _holdCurrent = true;
            return;
        }

        // Copy in slices with flushes between, so a 32 MiB read never sits twice in memory.
        while (!data.IsEmpty)
        {
            int n = Math.Min(data.Length, FlushThresholdBytes);
            _output.Write(data.Span[..n]);
            _unflushedBytes += n;
            data = data[n..];
            if (_unflushedBytes >= FlushThresholdBytes)
            {
                await FlushAsync().ConfigureAwait(false);
            }
        }
    }

    private void WriteSimpleReply(ulong handle, uint error)
    {
        FormatSimpleReply(_output.GetSpan(SimpleReplySize), handle, error);
        _output.Advance(SimpleReplySize);
        _unflushedBytes += SimpleReplySize;
    }

    private static void FormatSimpleReply(Span<byte> span, ulong handle, uint error)
    {
        BinaryPrimitives.WriteUInt32BigEndian(span, NBD_SIMPLE_REPLY_MAGIC);
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], handle);
    }

    /// <summary>
    /// One chunk per run: OFFSET_HOLE for runs that read as zeros, OFFSET_DATA for the rest, DONE on the last.
    /// Adjacent runs of the same kind are merged so a fragmented map does not fragment the reply.
    /// </summary>
    private async ValueTask WriteSparseReadAsync(NbdRequest request)
    {
        long start = (long)request.OffsetBytes;
        long end = start + (long)request.LengthBytes;
        ReadOnlyMemory<byte> data = request.Data;
        long runStart = start;
        bool runZero = false;
        long position = start;
        int i = 0;
        while (position < end)
        {
            // The kind of the piece at 'position': extents not covering it (past the map) count as data.
            bool zero = false;
            long pieceEnd = end;
            while (i < request.Extents.Count)
            {
                ImageExtent extent = request.Extents[i];
                long extentEnd = extent.OffsetBytes + extent.LengthBytes;
                if (extentEnd <= position)
                {
                    i++;
                    continue;
                }

                zero = (extent.Flags & ExtentFlags.Zero) != 0;
                pieceEnd = Math.Min(end, extentEnd);
                break;
            }

            if (position > runStart && zero != runZero)
            {
                await WriteReadChunkAsync(request, runStart, position, runZero, data[(int)(runStart - start)..(int)(position - start)], done: false).ConfigureAwait(false);
                runStart = position;
            }

            runZero = zero;
            position = pieceEnd;
        }

        await WriteReadChunkAsync(request, runStart, end, runZero, data[(int)(runStart - start)..], done: true).ConfigureAwait(false);
    }

    private ValueTask WriteReadChunkAsync(NbdRequest request, long from, long to, bool zero, ReadOnlyMemory<byte> data, bool done)
    {
        ushort flags = done ? NBD_REPLY_FLAG_DONE : (ushort)0;
        if (!zero)
        {
            return WriteDataChunkAsync(request, (ulong)from, data, flags);
        }

        // OFFSET_HOLE payload: u64 offset, u32 length (reads are capped far below 4 GiB, so never the _EXT form).
        WriteChunkHeader(request, NBD_REPLY_TYPE_OFFSET_HOLE, 12, flags);
        Span<byte> span = _output.GetSpan(12);
        BinaryPrimitives.WriteUInt64BigEndian(span, (ulong)from);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], (uint)(to - from));
        _output.Advance(12);
        return ValueTask.CompletedTask;
    }

    private void WriteChunkHeader(NbdRequest request, ushort type, ulong length, ushort flags = NBD_REPLY_FLAG_DONE)
    {
        int size = FormatChunkHeader(_output.GetSpan(ExtendedReplySize), request, type, length, flags);
        _output.Advance(size);
        _unflushedBytes += size + (long)length;
    }

    /// <summary>A structured chunk header, or with extended headers the 32-byte one; returns its size.</summary>
    private int FormatChunkHeader(Span<byte> span, NbdRequest request, ushort type, ulong length, ushort flags)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(span[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], request.Handle);
        if (_extendedHeaders)
        {
            BinaryPrimitives.WriteUInt32BigEndian(span, NBD_EXTENDED_REPLY_MAGIC);
            BinaryPrimitives.WriteUInt64BigEndian(span[16..], request.OffsetBytes);
            BinaryPrimitives.WriteUInt64BigEndian(span[24..], length);
            return ExtendedReplySize;
        }

        BinaryPrimitives.WriteUInt32BigEndian(span, NBD_STRUCTURED_REPLY_MAGIC);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)length);
        return StructuredReplySize;
    }

    private void WriteErrorChunk(NbdRequest request, uint error)
    {
        // ERROR payload: u32 error, u16 message length (0: no message).
        WriteChunkHeader(request, NBD_REPLY_TYPE_ERROR, 6);
        Span<byte> span = _output.GetSpan(6);
        BinaryPrimitives.WriteUInt32BigEndian(span, error);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], 0);
        _output.Advance(6);
    }

    private void WriteBlockStatus(NbdRequest request, uint contextId, ExtentList list, ushort flags)
    {
        // Clip the (possibly widened) extents to the request; at least one extent is guaranteed by the executor.
        long start = (long)request.OffsetBytes;
        long end = start + (long)request.LengthBytes;
        int limit = (request.Flags & NBD_CMD_FLAG_REQ_ONE) != 0 ? 1 : _options.MaxExtentsPerReply;
        ReadOnlySpan<ImageExtent> extents = list.AsSpan();
        int count = 0;
        foreach (ImageExtent extent in extents)
        {
            if (count == limit)
            {
                break;
            }

            if (Math.Min(end, extent.OffsetBytes + extent.LengthBytes) > Math.Max(start, extent.OffsetBytes))
            {
                count++;
            }
        }

        // BLOCK_STATUS_EXT (extended headers): context id, descriptor count, then u64 length and u64 flags each.
        bool wide = _extendedHeaders;
        int prefix = wide ? 8 : 4;
        int descriptor = wide ? 16 : 8;
        WriteChunkHeader(request, wide ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS, (ulong)(prefix + (descriptor * count)), flags);
        Span<byte> span = _output.GetSpan(prefix);
        BinaryPrimitives.WriteUInt32BigEndian(span, contextId);
        if (wide)
        {
            BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)count);
        }

        _output.Advance(prefix);
        int written = 0;
        foreach (ImageExtent extent in extents)
        {
            if (written == count)
            {
                break;
            }

            long from = Math.Max(start, extent.OffsetBytes);
            long to = Math.Min(end, extent.OffsetBytes + extent.LengthBytes);
            if (to <= from)
            {
                continue;
            }

            span = _output.GetSpan(descriptor);
            if (wide)
            {
                BinaryPrimitives.WriteUInt64BigEndian(span, (ulong)(to - from));
                BinaryPrimitives.WriteUInt64BigEndian(span[8..], (uint)extent.Flags);
            }
            else
            {
                // A compact request is under 4 GiB, so its clipped extents are too.
                BinaryPrimitives.WriteUInt32BigEndian(span, (uint)(to - from));
                BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)extent.Flags);
            }

            _output.Advance(descriptor);
            written++;
        }
    }
}
