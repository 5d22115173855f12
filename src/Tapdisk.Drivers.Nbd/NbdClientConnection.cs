using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tapdisk.Abi;

namespace Tapdisk.Drivers.Nbd;

/// <summary>
/// One NBD client connection: a negotiated socket, a table of in-flight request slots keyed by handle, one receive
/// thread that completes them, and a watchdog for the request timeout. Any protocol fault, disconnect or timeout kills
/// the connection: every outstanding request fails with the first reason (logged once), later requests fail at once,
/// and nothing outside this connection is touched.
/// </summary>
internal sealed partial class NbdClientConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NbdClientOptions _options;
    private readonly ILogger _logger;
    private readonly NbdPendingRequest[] _slots;
    private readonly Stack<NbdPendingRequest> _free;
    private readonly SemaphoreSlim _slotsAvailable;
    private readonly Lock _lock = new();
    private readonly Lock _sendLock = new();

    // Sends never block the sender: a request's header and payload are listed in _send and go out in one sendmsg
    // without waiting; what the socket cannot take yet is left listed, and the writer (a thread-pool work item) sends
    // it with blocking calls, taking the list whole and leaving an empty one for the requests that come meanwhile, so
    // bytes leave in order. Each slot has its own header (native: listing it pins nothing); the last one is DISC's.
    private const int HeaderStride = 32;
    private readonly AlignedMemory _headers;
    private SendVector _send;
    private SendVector _writing;
    private readonly IThreadPoolWorkItem _writer;
    private readonly ManualResetEventSlim _writerIdle = new(initialState: true);
    private bool _writerActive;
    private bool _sendClosed;
    private readonly byte[] _replyHeader = new byte[NbdProtocol.SimpleReplySize];
    private readonly long _requestTimeoutTicks;
    private Thread? _receiver;
    private Timer? _watchdog;
    private string? _failure;
    private int _failureErrno;
    private bool _dead;
    private bool _closing;
    private int _disposed;

    private NbdClientConnection(NbdAddress address, Socket socket, NbdClientOptions options)
    {
        Address = address;
        _socket = socket;
        _options = options;
        _logger = options.Logger;
        _slots = new NbdPendingRequest[Math.Clamp(options.MaxInFlight, 1, NbdClientOptions.MaxInFlightLimit)];
        _free = new Stack<NbdPendingRequest>(_slots.Length);
        for (int i = _slots.Length - 1; i >= 0; i--)
        {
            _slots[i] = new NbdPendingRequest(this, i);
            _free.Push(_slots[i]);
        }

        _slotsAvailable = new SemaphoreSlim(_slots.Length, _slots.Length);
        _headers = new AlignedMemory((_slots.Length + 1) * HeaderStride, 8);

        // Every unsent request's header and payload, and DISC, fit one list: a slot is reused only after its reply,
        // so after its request went out whole.
        int listed = (2 * _slots.Length) + 1;
        _send = new SendVector(listed);
        _writing = new SendVector(listed);
        _writer = new Writer(this);
        _requestTimeoutTicks = (long)(options.RequestTimeout.TotalSeconds * Stopwatch.Frequency);
    }

    public NbdAddress Address { get; }

    public long SizeBytes { get; private set; }

    public ushort TransmissionFlags { get; private set; }

    public int MinimumBlockBytes { get; private set; } = 1;

    public int PreferredBlockBytes { get; private set; } = 4096;

    public int MaximumBlockBytes { get; private set; } = 32 * 1024 * 1024;

    /// <summary>"fixed newstyle (GO)", "newstyle (EXPORT_NAME)" or "oldstyle".</summary>
    public string Style { get; private set; } = string.Empty;

    /// <summary>Why the connection died, or null while it serves.</summary>
    public string? Failure => Volatile.Read(ref _failure);

    public bool Has(ushort flag) => (TransmissionFlags & flag) == flag;

    /// <summary>Connects and negotiates within <see cref="NbdClientOptions.ConnectTimeout"/>, then starts receiving.</summary>
    public static NbdClientConnection Connect(NbdAddress address, NbdClientOptions options)
    {
        var deadline = Stopwatch.StartNew();
        Socket socket = address.IsUnix
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        var connection = new NbdClientConnection(address, socket, options);
        try
        {
            if (!address.IsUnix)
            {
                socket.NoDelay = true;
            }

            if (address.IsUnix)
            {
                // Not on TCP: it keeps its own autotuning, which a fixed size would turn off.
                SocketSendBuffer.TrySet(socket);
            }

            connection.ConnectSocket(deadline);
            connection.Negotiate(deadline);

            // Idle connections wait for replies forever (the watchdog bounds requests); a send gets the request bound.
            socket.ReceiveTimeout = 0;
            socket.SendTimeout = (int)Math.Clamp(options.RequestTimeout.TotalMilliseconds, 1, int.MaxValue);
        }
        catch
        {
            socket.Dispose();
            connection.FreeSendLists();
            throw;
        }

        connection.Start();
        Log.Connected(connection._logger, address.Text, connection.Style, connection.SizeBytes, connection.TransmissionFlags);
        return connection;
    }

    private void Start()
    {
        _receiver = new Thread(ReceiveLoop) { IsBackground = true, Name = "nbd-client" };
        _receiver.Start();
        TimeSpan period = TimeSpan.FromTicks(Math.Clamp(_options.RequestTimeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond));
        _watchdog = new Timer(static state => ((NbdClientConnection)state!).CheckTimeouts(), this, period, period);
    }

    /// <summary>
    /// Declares the connection dead with <paramref name="reason"/> (the first reason wins) and shuts the socket, which
    /// wakes the receive thread (it then fails every outstanding request) and any blocked sender.
    /// </summary>
    public void Fail(int errno, string reason)
    {
        if (Interlocked.CompareExchange(ref _failure, reason, null) is null)
        {
            _failureErrno = errno;
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already shut or closed: the receive thread is awake or gone.
        }
    }

    private void CheckTimeouts()
    {
        if (Failure is not null)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        foreach (NbdPendingRequest slot in _slots)
        {
            // Racy reads are fine: a slot seen pending with an old timestamp has waited at least that long.
            if (slot.State == NbdPendingRequest.Pending && now - slot.SentTimestamp > _requestTimeoutTicks)
            {
                Fail(Errno.ETIMEDOUT, $"no reply to {CommandName(slot.Command)} of {slot.LengthBytes} bytes at offset {slot.OffsetBytes} within {_options.RequestTimeout.TotalSeconds} s");
                return;
            }
        }
    }

    /// <summary>Gives a slot back (after its result was read, or when it was never sent).</summary>
    public void Return(NbdPendingRequest slot)
    {
        lock (_lock)
        {
            slot.State = NbdPendingRequest.Free;
            _free.Push(slot);
        }

        _slotsAvailable.Release();
    }

    private ErrnoIOException Dead(string failure) =>
        new(_failureErrno == 0 ? Errno.EIO : _failureErrno, $"nbd:{Address.Text}", $"NBD connection is down: {failure}");

    private static string CommandName(ushort command) => command switch
    {
        NbdProtocol.NBD_CMD_READ => "READ",
        NbdProtocol.NBD_CMD_WRITE => "WRITE",
        NbdProtocol.NBD_CMD_FLUSH => "FLUSH",
        NbdProtocol.NBD_CMD_TRIM => "TRIM",
        NbdProtocol.NBD_CMD_WRITE_ZEROES => "WRITE_ZEROES",
        _ => $"command {command}",
    };

    /// <summary>
    /// Sends DISC if the connection is alive (the caller drained its requests first, as NBD asks), then stops the
    /// receive thread and the watchdog and closes the socket.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _watchdog?.Dispose();
        Volatile.Write(ref _closing, true);
        if (Failure is null)
        {
            TrySendDisconnect();

            // DISC may be left to the writer: let it go out before the socket is shut.
            _writerIdle.Wait(_options.RequestTimeout);
        }

        Fail(Errno.ESHUTDOWN, "closed");
        if (_receiver is { } receiver && !receiver.Join(_options.RequestTimeout))
        {
            // The receive thread is woken by the shutdown above; not returning means the kernel kept it in recv.
            Log.ReceiverStuck(_logger, Address.Text, _options.RequestTimeout.TotalSeconds);
        }

        // A sender that registered its slot before the connection failed may still come to Send: it finds this. A
        // writer still sending (into the shut socket, so not for long) frees the lists when it stops.
        lock (_sendLock)
        {
            _sendClosed = true;
            if (!_writerActive)
            {
                FreeSendLists();
            }
        }

        // The semaphore is not disposed: a late awaiter still returns its slot through it.
        _socket.Dispose();
    }
}
