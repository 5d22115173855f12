using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Nbd;

/// <summary>
/// A connected stream socket as the connection's pipes, with no thread hop on either side. A dedicated thread does
/// blocking receives and runs the connection's receive loop inline (the input pipe's reader scheduler is
/// <see cref="PipeScheduler.Inline"/>), and replies go out with a blocking send on whichever thread flushes them,
/// normally the I/O worker that finished the request. Over NetworkStream each queue-depth-1 request cost an epoll
/// wakeup plus a thread-pool wakeup before it was even parsed, and another thread-pool wakeup to send its reply.
/// </summary>
internal sealed class SocketTransport : IDuplexPipe, IDirectWriter, IDisposable
{
    private const int ReceiveBytes = 64 * 1024;
    private const int SendBufferBytes = 1024 * 1024;

    private readonly Socket _socket;
    private readonly Pipe _inbound;
    private readonly SendStream _sendStream;
    private readonly TaskCompletionSource _receiverDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _shutDown;

    public SocketTransport(Socket socket, TimeSpan sendStallTimeout)
    {
        _socket = socket;

        // Blocking mode for the fd itself: a descriptor received from another process may carry O_NONBLOCK.
        socket.Blocking = true;

        // SO_SNDTIMEO: a send that moves no byte for this long fails, so a peer that stopped reading cannot keep the
        // sending I/O worker forever (a send that makes progress restarts the clock).
        socket.SendTimeout = (int)Math.Ceiling(sendStallTimeout.TotalMilliseconds);
        TrySetSendBuffer(socket);

        // Backpressure: while the receive loop waits for a free request slot, at most this much is read ahead.
        _inbound = new Pipe(new PipeOptions(
            readerScheduler: PipeScheduler.Inline,
            writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: 1024 * 1024,
            resumeWriterThreshold: 512 * 1024,
            minimumSegmentSize: ReceiveBytes,
            useSynchronizationContext: false));
        _sendStream = new SendStream(this);
        Output = PipeWriter.Create(_sendStream, new StreamPipeWriterOptions(minimumBufferSize: ReceiveBytes, leaveOpen: true));
    }

    public PipeReader Input => _inbound.Reader;

    public PipeWriter Output { get; }

    /// <summary>Sends past <see cref="Output"/> (flush it first); blocking, like its flushes.</summary>
    public void Write(ReadOnlySpan<byte> header, ReadOnlySpan<byte> data, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _sendStream.ShutDownOnCancel(cancellationToken);
        while (header.Length + data.Length > 0)
        {
            nint n = GatherSend.Send(_socket.SafeHandle, header, data, out int errno);
            if (n < 0)
            {
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                _sendStream.Fail(errno);
            }

            int fromHeader = (int)Math.Min(n, header.Length);
            header = header[fromHeader..];
            data = data[(int)(n - fromHeader)..];
        }
    }

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
        _sendStream.Dispose();
        _socket.Dispose();
    }

    /// <summary>
    /// Asks for a 1 MiB send buffer (the kernel doubles it, within net.core.wmem_max). The default 208 KiB holds less
    /// than one 256 KiB read reply, so every large reply blocked in send and cost its I/O worker a sleep and a wakeup
    /// while the client drained it; nbdcopy's server CPU per copy fell by about a tenth with the larger buffer.
    /// </summary>
    private static void TrySetSendBuffer(Socket socket)
    {
        try
        {
            socket.SendBufferSize = SendBufferBytes;
        }
        catch (SocketException)
        {
            // Only a hint: a socket that refuses keeps the default.
        }
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

    /// <summary>A write-only stream of blocking sends; a cancelled flush shuts the socket down to wake the sender.</summary>
    private sealed class SendStream(SocketTransport owner) : Stream
    {
        private CancellationToken _registered;
        private CancellationTokenRegistration _registration;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                int n = owner._socket.Send(buffer, SocketFlags.None, out SocketError error);
                if (error != SocketError.Success)
                {
                    Fail(error);
                }

                buffer = buffer[n..];
            }
        }

        /// <summary>Throws for a failed send (an errno from a send of our own).</summary>
        [DoesNotReturn]
        public void Fail(int errno)
        {
            if (errno == Errno.EAGAIN)
            {
                Fail(SocketError.WouldBlock);
            }

            throw new IOException("send failed", new ErrnoIOException(errno, null, "sendmsg"));
        }

        [DoesNotReturn]
        private void Fail(SocketError error)
        {
            if (error is SocketError.WouldBlock or SocketError.TimedOut)
            {
                // The socket is blocking, so this is SO_SNDTIMEO: the peer took nothing for the whole stall timeout.
                // Drop it, which also wakes its receive thread.
                owner.Shutdown();
                throw new IOException($"the peer took no reply bytes for {owner._socket.SendTimeout} ms", new SocketException((int)error));
            }

            throw new IOException("send failed", new SocketException((int)error));
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled(cancellationToken);
            }

            ShutDownOnCancel(cancellationToken);
            try
            {
                Write(buffer.Span);
                return ValueTask.CompletedTask;
            }
            catch (IOException e)
            {
                return ValueTask.FromException(e);
            }
        }

        /// <summary>
        /// A send blocked on a peer that stopped reading must still end when the connection is cancelled: the token
        /// shuts the socket down. Tokens change only between the handshake and transmission, so this registers once
        /// or twice per connection. Every sender calls it, the direct one included: a connection whose replies all
        /// go out directly never flushes the pipe.
        /// </summary>
        public void ShutDownOnCancel(CancellationToken cancellationToken)
        {
            if (cancellationToken != _registered && cancellationToken.CanBeCanceled)
            {
                _registration.Dispose();
                _registered = cancellationToken;
                _registration = cancellationToken.UnsafeRegister(static state => ((SocketTransport)state!).Shutdown(), owner);
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _registration.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
