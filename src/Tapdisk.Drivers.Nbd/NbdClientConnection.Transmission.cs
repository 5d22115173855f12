using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Tapdisk.Abi;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Drivers.Nbd;

/// <summary>Requests out, replies in (simple replies only: structured replies are not negotiated).</summary>
internal sealed partial class NbdClientConnection
{
    /// <summary>
    /// Sends one request and returns what completes with its reply. The send never waits for the socket (what it
    /// cannot take yet goes to the writer, bounded by the request timeout). With every
    /// slot in flight the request waits for one asynchronously: a blocked thread-pool thread could be the one a
    /// completion (which frees a slot) needs.
    /// </summary>
    public ValueTask Submit(ushort command, ushort flags, long offsetBytes, int lengthBytes, ReadOnlyMemory<byte> payload, Memory<byte> destination)
    {
        if (Failure is { } failure)
        {
            return ValueTask.FromException(Dead(failure));
        }

        return _slotsAvailable.Wait(0)
            ? SubmitWithSlot(command, flags, offsetBytes, lengthBytes, payload, destination)
            : SubmitWhenSlotFreeAsync(command, flags, offsetBytes, lengthBytes, payload, destination);
    }

    private async ValueTask SubmitWhenSlotFreeAsync(ushort command, ushort flags, long offsetBytes, int lengthBytes, ReadOnlyMemory<byte> payload, Memory<byte> destination)
    {
        if (!await _slotsAvailable.WaitAsync(_options.RequestTimeout).ConfigureAwait(false))
        {
            throw new ErrnoIOException(Errno.ETIMEDOUT, $"nbd:{Address.Text}", $"all {_slots.Length} request slots stayed busy for {_options.RequestTimeout.TotalSeconds} s");
        }

        await SubmitWithSlot(command, flags, offsetBytes, lengthBytes, payload, destination).ConfigureAwait(false);
    }

    /// <summary>Takes the slot the caller's semaphore count entitles it to, registers it, and sends.</summary>
    private ValueTask SubmitWithSlot(ushort command, ushort flags, long offsetBytes, int lengthBytes, ReadOnlyMemory<byte> payload, Memory<byte> destination)
    {
        NbdPendingRequest slot;
        lock (_lock)
        {
            if (_dead)
            {
                _slotsAvailable.Release();
                return ValueTask.FromException(Dead(Failure ?? "closed"));
            }

            slot = _free.Pop();
            slot.Generation++;
            slot.Command = command;
            slot.OffsetBytes = offsetBytes;
            slot.LengthBytes = lengthBytes;
            slot.Destination = destination;
            slot.SentTimestamp = Stopwatch.GetTimestamp();
            slot.Loop = IoLoop.Current;

            // Registered before the send, so a reply can never arrive for a slot the receive thread does not know.
            slot.State = NbdPendingRequest.Pending;
        }

        // The slot's result is read by the caller's await; anything that kills the connection below fails it through
        // the receive thread's sweep, so exactly one party completes it.
        ValueTask result = slot.AsValueTask();
        Send(slot.Index, slot.Handle, command, flags, offsetBytes, lengthBytes, payload);
        return result;
    }

    /// <summary>
    /// Lists one request (header in the slot's own place, then the payload) and sends what the socket takes now,
    /// without waiting; the rest goes to the writer. A failure fails the connection (reason recorded, socket shut).
    /// </summary>
    private void Send(int headerIndex, ulong handle, ushort command, ushort flags, long offsetBytes, int lengthBytes, ReadOnlyMemory<byte> payload)
    {
        lock (_sendLock)
        {
            if (_sendClosed)
            {
                return;
            }

            Memory<byte> header = _headers.Memory.Slice(headerIndex * HeaderStride, RequestSize);
            Span<byte> h = header.Span;
            BinaryPrimitives.WriteUInt32BigEndian(h, NBD_REQUEST_MAGIC);
            BinaryPrimitives.WriteUInt16BigEndian(h[4..], flags);
            BinaryPrimitives.WriteUInt16BigEndian(h[6..], command);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], handle);
            BinaryPrimitives.WriteUInt64BigEndian(h[16..], (ulong)offsetBytes);
            BinaryPrimitives.WriteUInt32BigEndian(h[24..], (uint)lengthBytes);
            _send.Add(header, payload);

            if (_writerActive)
            {
                // The writer is sending what was listed before: this follows it.
                return;
            }

            nint n;
            int errno;
            do
            {
                n = _send.SendOnce(_socket.SafeHandle, out errno, dontWait: true);
            }
            while (n > 0 && _send.PendingBytes > 0);

            if (_send.PendingBytes == 0)
            {
                _send.Clear();
            }
            else if (n < 0 && errno is not (Errno.EAGAIN or Errno.EINTR))
            {
                _send.Clear();
                FailSend(errno);
            }
            else
            {
                // The socket is full: the server has not read what is there yet.
                _writerActive = true;
                _writerIdle.Reset();
                ThreadPool.UnsafeQueueUserWorkItem(_writer, preferLocal: false);
            }
        }
    }

    /// <summary>Sends what senders left listed, a whole list at a time, until none is left.</summary>
    private void WriteListed()
    {
        while (true)
        {
            SendVector list;
            bool added = false;
            lock (_sendLock)
            {
                if (_send.PendingBytes == 0 || _sendClosed)
                {
                    _send.Clear();
                    _writerActive = false;
                    _writerIdle.Set();
                    if (_sendClosed)
                    {
                        FreeSendLists();
                    }

                    return;
                }

                list = _send;
                _send = _writing;
                _writing = list;

                // Held until the send is done: Dispose closes the socket only after it closed sending, under this lock.
                _socket.SafeHandle.DangerousAddRef(ref added);
            }

            // Blocking, outside the lock: senders meanwhile list into the other one. SO_SNDTIMEO bounds each call.
            int errno;
            try
            {
                errno = list.SendAll(_socket.SafeHandle);
            }
            finally
            {
                if (added)
                {
                    _socket.SafeHandle.DangerousRelease();
                }
            }

            if (errno != 0)
            {
                FailSend(errno);
            }
        }
    }

    private void FailSend(int errno) =>
        // EAGAIN on this blocking socket is its SO_SNDTIMEO: the server took nothing for the request timeout.
        Fail(errno == Errno.EAGAIN ? Errno.ETIMEDOUT : Errno.EIO, errno == Errno.EAGAIN
            ? $"send blocked for {_options.RequestTimeout.TotalSeconds} s (server not reading)"
            : $"send failed: {Errno.Describe(errno)}");

    /// <summary>Under the send lock once sending is closed and no writer runs (or when the connection never opened).</summary>
    private void FreeSendLists()
    {
        _send.Dispose();
        _writing.Dispose();
        ((IDisposable)_headers).Dispose();
        _writerIdle.Dispose();
    }

    /// <summary>DISC: handle, offset and length all zero.</summary>
    private void TrySendDisconnect() => Send(_slots.Length, 0, NBD_CMD_DISC, 0, 0, 0, ReadOnlyMemory<byte>.Empty);

    /// <summary>The writer's work item (one per connection, queued only while it is not running).</summary>
    private sealed class Writer(NbdClientConnection owner) : IThreadPoolWorkItem
    {
        public void Execute() => owner.WriteListed();
    }

    private void ReceiveLoop()
    {
        string? fault = null;
        int errno = Errno.EIO;
        try
        {
            while (fault is null)
            {
                fault = ReceiveOne(ref errno);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            fault = $"receive failed: {e.Message}";
        }

        FailAll(errno, fault);
    }

    /// <summary>Handles one reply; the reason the connection must die, or null to go on.</summary>
    private string? ReceiveOne(ref int errno)
    {
        if (!ReceiveExactly(_replyHeader, out bool atStart))
        {
            return atStart ? "server closed the connection" : "server closed the connection inside a reply header";
        }

        uint magic = BinaryPrimitives.ReadUInt32BigEndian(_replyHeader);
        uint error = BinaryPrimitives.ReadUInt32BigEndian(_replyHeader.AsSpan(4));
        ulong handle = BinaryPrimitives.ReadUInt64BigEndian(_replyHeader.AsSpan(8));
        if (magic != NBD_SIMPLE_REPLY_MAGIC)
        {
            return magic == NBD_STRUCTURED_REPLY_MAGIC
                ? "structured reply although structured replies were not negotiated"
                : $"bad reply magic 0x{magic:x8}";
        }

        NbdPendingRequest? slot = TakePending(handle);
        if (slot is null)
        {
            return $"reply for unknown handle 0x{handle:x16}";
        }

        if (error != 0)
        {
            // A per-request error leaves the connection usable (proto.md); blktap's client killed it instead.
            int code = ErrnoOf(error);
            slot.Complete(new ErrnoIOException(code, $"nbd:{Address.Text}", $"server failed {CommandName(slot.Command)} of {slot.LengthBytes} bytes at offset {slot.OffsetBytes} with NBD error {error}"));
            return null;
        }

        if (slot.Command == NBD_CMD_READ && !ReceiveExactly(slot.Destination.Span[..slot.LengthBytes], out _))
        {
            // The slot is ours (Completing), so the sweep below fails it too.
            errno = Errno.EIO;
            PutBackForSweep(slot);
            return $"server closed the connection inside the data of a {slot.LengthBytes}-byte READ reply";
        }

        slot.Complete(null);
        return null;
    }

    private NbdPendingRequest? TakePending(ulong handle)
    {
        uint index = (uint)handle;
        if (index >= (uint)_slots.Length)
        {
            return null;
        }

        NbdPendingRequest slot = _slots[index];
        lock (_lock)
        {
            if (slot.State != NbdPendingRequest.Pending || slot.Generation != (uint)(handle >> 32))
            {
                return null;
            }

            slot.State = NbdPendingRequest.Completing;
            return slot;
        }
    }

    private void PutBackForSweep(NbdPendingRequest slot)
    {
        lock (_lock)
        {
            slot.State = NbdPendingRequest.Pending;
        }
    }

    /// <summary>Reads exactly <paramref name="buffer"/>; false on EOF (<paramref name="atStart"/>: before any byte).</summary>
    private bool ReceiveExactly(Span<byte> buffer, out bool atStart)
    {
        atStart = true;
        while (buffer.Length > 0)
        {
            int n = _socket.Receive(buffer);
            if (n == 0)
            {
                return false;
            }

            atStart = false;
            buffer = buffer[n..];
        }

        return true;
    }

    /// <summary>The receive thread's last act: the connection is dead, and every request still in flight fails.</summary>
    private void FailAll(int errno, string fault)
    {
        // A reason recorded earlier (timeout, send failure, close) explains the EOF better than the EOF does.
        if (Interlocked.CompareExchange(ref _failure, fault, null) is null)
        {
            _failureErrno = errno;
        }

        string reason = Failure!;
        var pending = new List<NbdPendingRequest>();
        lock (_lock)
        {
            _dead = true;
            foreach (NbdPendingRequest slot in _slots)
            {
                if (slot.State == NbdPendingRequest.Pending)
                {
                    slot.State = NbdPendingRequest.Completing;
                    pending.Add(slot);
                }
            }
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Teardown: the peer or Dispose closed it first.
        }

        if (Volatile.Read(ref _closing) && pending.Count == 0)
        {
            Log.Disconnected(_logger, Address.Text);
        }
        else
        {
            Log.ConnectionFailed(_logger, Address.Text, pending.Count, reason);
        }

        foreach (NbdPendingRequest slot in pending)
        {
            slot.Complete(Dead(reason));
        }
    }

    /// <summary>NBD error codes are errno values on the wire (proto.md); anything unknown is EIO.</summary>
    private static int ErrnoOf(uint error) => error switch
    {
        NBD_EPERM or NBD_EIO or NBD_ENOMEM or NBD_EINVAL or NBD_ENOSPC or NBD_EOVERFLOW or NBD_ENOTSUP or NBD_ESHUTDOWN => (int)error,
        _ => Errno.EIO,
    };
}
