using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Nbd;

/// <summary>
/// A connected stream socket as the connection's pipes, with no thread hop on either side. A dedicated thread does
/// blocking receives and runs the connection's receive loop inline (the input pipe's reader scheduler is
/// <see cref="PipeScheduler.Inline"/>), and replies go out with blocking sends on whichever thread flushes them:
/// the connection's I/O loop, or the I/O worker that finished the request. Over NetworkStream each queue-depth-1
/// request cost an epoll wakeup plus a thread-pool wakeup before it was even parsed, and another thread-pool wakeup
/// to send its reply.
/// </summary>
internal sealed class SocketTransport : IDuplexPipe, IDisposable
{
    private const int ReceiveBytes = 64 * 1024;

    private readonly Socket _socket;
    private readonly Pipe _inbound;
    private readonly SendWriter _output;
    private readonly TaskCompletionSource _receiverDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _shutDown;
    private CancellationToken _registered;
    private CancellationTokenRegistration _registration;

    public SocketTransport(Socket socket, TimeSpan sendStallTimeout)
    {
        _socket = socket;

        // Blocking mode for the fd itself: a descriptor received from another process may carry O_NONBLOCK.
        socket.Blocking = true;

        // SO_SNDTIMEO: a send that moves no byte for this long fails, so a peer that stopped reading cannot keep the
        // sending I/O worker forever (a send that makes progress restarts the clock).
        socket.SendTimeout = (int)Math.Ceiling(sendStallTimeout.TotalMilliseconds);
        SocketSendBuffer.TrySet(socket);

        // Backpressure: while the receive loop waits for a free request slot, at most this much is read ahead.
        _inbound = new Pipe(new PipeOptions(
            readerScheduler: PipeScheduler.Inline,
            writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: 1024 * 1024,
            resumeWriterThreshold: 512 * 1024,
            minimumSegmentSize: ReceiveBytes,
            useSynchronizationContext: false));
        _output = new SendWriter(this);
    }

    public PipeReader Input => _inbound.Reader;

    /// <summary>Also an <see cref="IGatherWriter"/>: replies' data is sent from the requests' buffers.</summary>
    public PipeWriter Output => _output;

    /// <summary>Starts the receiving thread; the connection's code then runs on it until it first waits.</summary>
    public void Start()
    {
        var thread = new Thread(static state => ((SocketTransport)state!).ReceiveLoop())
        {
            IsBackground = true,
            Name = "tapdisk-nbd-rx",
        };
        thread.UnsafeStart(this);
    }

    /// <summary>Shuts the socket down both ways, which wakes a blocked receive or send; waits for the receiving thread.</summary>
    public Task ShutdownAsync()
    {
        Shutdown();
        return _receiverDone.Task;
    }

    public void Dispose()
    {
        Shutdown();
        _registration.Dispose();
        _output.Dispose();
        _socket.Dispose();
    }

    private void Shutdown()
    {
        if (Interlocked.Exchange(ref _shutDown, 1) != 0)
        {
            return;
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Teardown: the peer may already be gone.
        }
    }

    private void ReceiveLoop()
    {
        PipeWriter writer = _inbound.Writer;
        Exception? failure = null;
        IoLoop? loop = null;
        try
        {
            // With the io_uring engine this thread is the connection's event loop: it waits for the next bytes and
            // for the I/O of the requests it parsed in one system call, and runs their completions (replies) itself.
            try
            {
                loop = IoLoop.TryCreateForCurrentThread();
            }
            catch (IOException)
            {
                // A per-ring limit (locked memory on older kernels, descriptors): this connection keeps blocking receives
                // and the I/O workers.
            }

            while (true)
            {
                Memory<byte> memory = writer.GetMemory(ReceiveBytes);
                int n = loop is null ? ReceiveBlocking(memory.Span) : ReceiveOnLoop(loop, memory);
                if (n <= 0)
                {
                    if (n < 0 && Volatile.Read(ref _shutDown) == 0 && n != -Errno.ECONNRESET)
                    {
                        failure = new IOException("receive failed", new ErrnoIOException(-n, null, "recv"));
                    }

                    break;
                }

                writer.Advance(n);

                // The receive loop runs inside this call. It waits only when the loop has its maximum of requests in
                // flight and has stopped consuming (the Task is made only then); an I/O loop keeps running meanwhile.
                ValueTask<FlushResult> flush = writer.FlushAsync();
                FlushResult result = flush.IsCompletedSuccessfully ? flush.Result
                    : loop is null ? flush.AsTask().GetAwaiter().GetResult() : loop.Run(flush);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception e)
        {
            // This thread's own faults (a disposed socket, a completed pipe) end the input; they must never end the
            // process. Faults of the connection code it runs inline are caught by that code.
            failure = e;
        }
        finally
        {
            if (loop is not null && failure is not null)
            {
                // The loop failed with a receive possibly still in the kernel, into the pipe's memory: end it first.
                Shutdown();
            }

            try
            {
                // Requests still in the kernel complete (and answer, or are recycled) here, before the ring closes.
                loop?.Dispose();
            }
            catch (IOException e)
            {
                failure ??= e;
            }

            // Only now may the pipe give its segments back to the pool: no receive of ours can write into them.
            writer.Complete(failure);
            _receiverDone.TrySetResult();
        }
    }

    /// <summary>A blocking recv: the byte count, 0 at end of input, or a negative errno.</summary>
    private int ReceiveBlocking(Span<byte> buffer)
    {
        int n = _socket.Receive(buffer, SocketFlags.None, out SocketError error);
        if (error == SocketError.Success)
        {
            return n;
        }

        return error == SocketError.ConnectionReset ? -Errno.ECONNRESET : -Errno.EIO;
    }

    /// <summary>A recv through the loop, running completions until it is answered.</summary>
    private int ReceiveOnLoop(IoLoop loop, Memory<byte> buffer)
    {
        while (true)
        {
            int n = loop.Await(loop.StartAsync(IoUringOp.Recv, _socket.SafeHandle, buffer, 0));
            if (n != -Errno.EINTR && n != -Errno.EAGAIN)
            {
                return n;
            }
        }
    }

    /// <summary>
    /// Throws for a failed send. EAGAIN on this blocking socket is SO_SNDTIMEO: the peer took nothing for the whole
    /// stall timeout, so it is dropped, which also wakes its receive thread.
    /// </summary>
    [DoesNotReturn]
    private void ThrowSendFailed(int errno)
    {
        if (errno == Errno.EAGAIN)
        {
            Shutdown();
            throw new IOException($"the peer took no reply bytes for {_socket.SendTimeout} ms", new ErrnoIOException(errno, null, "sendmsg"));
        }

        throw new IOException("send failed", new ErrnoIOException(errno, null, "sendmsg"));
    }

    /// <summary>
    /// A send blocked on a peer that stopped reading must still end when the connection is cancelled: the token
    /// shuts the socket down. Tokens change only between the handshake and transmission, so this registers once or
    /// twice per connection.
    /// </summary>
    private void ShutDownOnCancel(CancellationToken cancellationToken)
    {
        if (cancellationToken != _registered && cancellationToken.CanBeCanceled)
        {
            _registration.Dispose();
            _registered = cancellationToken;
            _registration = cancellationToken.UnsafeRegister(static state => ((SocketTransport)state!).Shutdown(), this);
        }
    }

    /// <summary>
    /// The output: bytes written go into native chunks, buffers appended are listed in place, and a flush sends all
    /// of it in order with blocking sendmsg calls on the flushing thread (many replies, headers and data, per call).
    /// Copying 4 KiB read replies into a pipe and sending them through a stream cost more than the send on a busy
    /// 2-core host. Chunks are reused after each flush.
    /// </summary>
    private sealed class SendWriter(SocketTransport owner) : PipeWriter, IGatherWriter, IDisposable
    {
        private const int ChunkBytes = 16 * 1024;
        private const int VectorEntries = 256;

        private readonly SendVector _vector = new(VectorEntries);
        private readonly List<AlignedMemory> _chunks = [];
        private int _chunk;
        private int _used;
        private int _runStart;
        private bool _completed;

        public override bool CanGetUnflushedBytes => true;

        public override long UnflushedBytes => _vector.PendingBytes + (_used - _runStart);

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            if (_completed)
            {
                throw new InvalidOperationException("the output is complete");
            }

            sizeHint = Math.Max(sizeHint, 1);
            if (_chunks.Count == 0 || _chunks[_chunk].Length - _used < sizeHint)
            {
                NextChunk(sizeHint);
            }

            return _chunks[_chunk].Memory[_used..];
        }

        public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public override void Advance(int bytes)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bytes);
            if (bytes > 0 && (_chunks.Count == 0 || bytes > _chunks[_chunk].Length - _used))
            {
                throw new ArgumentOutOfRangeException(nameof(bytes), "advanced past the memory handed out");
            }

            _used += bytes;
        }

        /// <summary>Lists <paramref name="data"/> after the bytes written so far; unchanged until the next flush or discard.</summary>
        public void Append(ReadOnlyMemory<byte> data)
        {
            if (_completed)
            {
                throw new InvalidOperationException("the output is complete");
            }

            ListRun();
            List(data);
        }

        public void Discard()
        {
            _vector.Clear();
            ResetChunks();
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                // Nothing listed may outlive the flush: the caller gives the buffers back either way.
                Discard();
                return ValueTask.FromCanceled<FlushResult>(cancellationToken);
            }

            if (_completed)
            {
                return ValueTask.FromException<FlushResult>(new InvalidOperationException("the output is complete"));
            }

            owner.ShutDownOnCancel(cancellationToken);
            try
            {
                Flush();
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            }
            catch (IOException e)
            {
                return ValueTask.FromException<FlushResult>(e);
            }
        }

        /// <summary>Flushes are synchronous sends: none is ever pending (a stuck one ends by timeout or shutdown).</summary>
        public override void CancelPendingFlush()
        {
        }

        public override void Complete(Exception? exception = null)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            try
            {
                if (exception is null)
                {
                    Flush();
                }
            }
            finally
            {
                Discard();
            }
        }

        /// <summary>Frees the chunks; after the connection is done with the writer.</summary>
        public void Dispose()
        {
            _completed = true;
            _vector.Dispose();
            foreach (AlignedMemory chunk in _chunks)
            {
                ((IDisposable)chunk).Dispose();
            }

            _chunks.Clear();
        }

        private void Flush()
        {
            try
            {
                ListRun();
                SendListed();
            }
            finally
            {
                ResetChunks();
            }
        }

        /// <summary>Lists the written bytes not listed yet (they stay where they are until sent).</summary>
        private void ListRun()
        {
            if (_used == _runStart)
            {
                return;
            }

            List(_chunks[_chunk].Memory[_runStart.._used]);
            _runStart = _used;
        }

        /// <summary>Lists <paramref name="data"/> last, sending what is listed first when the list is full.</summary>
        private void List(ReadOnlyMemory<byte> data)
        {
            if (_vector.IsFull)
            {
                SendListed();
            }

            _vector.Add(data);
        }

        private void NextChunk(int sizeHint)
        {
            ListRun();
            int next = _chunks.Count == 0 ? 0 : _chunk + 1;
            while (next < _chunks.Count && _chunks[next].Length < sizeHint)
            {
                next++;
            }

            if (next == _chunks.Count)
            {
                _chunks.Add(new AlignedMemory(Math.Max(ChunkBytes, sizeHint), 64));
            }

            _chunk = next;
            _used = 0;
            _runStart = 0;
        }

        private void SendListed()
        {
            int errno = _vector.SendAll(owner._socket.SafeHandle);
            if (errno != 0)
            {
                owner.ThrowSendFailed(errno);
            }
        }

        private void ResetChunks()
        {
            _chunk = 0;
            _used = 0;
            _runStart = 0;
        }
    }
}
