using Microsoft.Extensions.Logging;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Blkif;

/// <summary>
/// The backend of one blkif shared ring: the mapped ring pages, the bound event channel, and one event-loop thread that
/// consumes requests, hands them to the VBD's <see cref="BlockBackend"/> (its gate, validation and I/O workers) and
/// produces responses (control-xen.md Part II 3.7, 4.10). Up to the ring size of requests are in flight at once and
/// complete out of order, as blktap's libaio requests do. The ring indices, the slots and the shared memory are touched
/// by that thread only; completions reach it through a lock-free stack. A frontend that corrupts the ring stops this
/// ring alone.
/// </summary>
public sealed unsafe partial class BlkifRing
{
    private const int MaxLoopFailures = 3;

    private readonly BlkifConnectParameters _parameters;
    private readonly BlkifRingOptions _options;
    private readonly BlkifRingGeometry _geometry;
    private readonly IGrantDevice _grants;
    private readonly IEventChannel _channel;
    private readonly MappedRegion _mapping;
    private readonly ILogger _logger;
    private readonly uint _localPort;
    private readonly BlkifSringHeader* _sring;
    private readonly byte* _ringBase;
    private readonly BlkifRequestSlot[] _slots;
    private readonly int[] _freeSlots;
    private readonly Thread _thread;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly int _maxSegments;

    private readonly BlockBackend _backend;
    private readonly bool _ownsBackend;
    private readonly Action _wake;

    // Ring-thread state (control-xen.md 3.1: the backend's private req_cons and rsp_prod_pvt; never read back from shared memory).
    private uint _reqCons;
    private uint _rspProdPvt;
    private uint _rspProdPublished;
    private int _freeCount;
    private BlkifRequestSlot? _drainSlot;
    private BlkifRequestSlot? _accepting;

    // The request being accepted is the only one in flight and no other is queued behind it (a frontend at queue depth 1).
    private bool _alone;
    private bool _broken;

    // With the io_uring engine the ring thread is an I/O loop: it waits for the frontend's events (a poll of the
    // evtchn fd) and for its requests' I/O in one call, and runs their completions itself.
    private IoLoop? _loop;
    private ValueTask<int> _eventPoll;
    private bool _polling;
    private int _loopFailures;

    // Completed slots, pushed by any thread, taken all at once by the ring thread (Treiber stack; no ABA: the consumer only swaps in null).
    private BlkifRequestSlot? _completed;

    // Control-thread request, read by the ring thread.
    private volatile bool _stopRequested;

    // Counters: written by the ring thread, read by stats.
    private long _requestsIn;
    private long _responsesOut;
    private long _kicksIn;
    private long _kicksOut;
    private long _errorsMessage;
    private long _errorsMap;
    private long _errorsVbd;
    private long _errorsImage;

    // At most 20 lines per 10 s per ring, then one line saying how many were dropped.
    private readonly LogRateLimiter _logLimit = new();

    private BlkifRing(BlkifConnectParameters parameters, BlkifRingOptions options, BlkifRingGeometry geometry, IGrantDevice grants, IEventChannel channel,
        MappedRegion mapping, uint localPort, BlockBackend backend, bool ownsBackend, ILogger logger)
    {
        _parameters = parameters;
        _options = options;
        _geometry = geometry;
        _grants = grants;
        _channel = channel;
        _mapping = mapping;
        _localPort = localPort;
        _backend = backend;
        _ownsBackend = ownsBackend;
        _wake = Wake;
        _logger = logger;
        _sring = (BlkifSringHeader*)mapping.Address;
        _ringBase = mapping.Address;
        _maxSegments = Math.Max(BlkifRingGeometry.MaxDirectSegments, options.MaxIndirectSegments);
        _slots = new BlkifRequestSlot[geometry.SlotCount];
        _freeSlots = new int[geometry.SlotCount];
        for (int i = 0; i < _slots.Length; i++)
        {
            _slots[i] = new BlkifRequestSlot(this, i, _maxSegments);
            _freeSlots[i] = _slots.Length - 1 - i;
        }

        _freeCount = _slots.Length;
        _thread = new Thread(Run) { IsBackground = true, Name = $"blkif {parameters.Domid}/{parameters.Devid}" };
    }

    public uint Domid => _parameters.Domid;

    public uint Devid => _parameters.Devid;

    public BlkifRingGeometry Geometry => _geometry;

    public uint LocalPort => _localPort;

    /// <summary>True once the frontend broke a ring invariant: the ring consumes nothing more.</summary>
    public bool IsBroken => Volatile.Read(ref _broken);

    /// <summary>Completes when the ring thread has released everything (after Disconnect).</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>A ring over its own backend for <paramref name="image"/> (tests, benchmarks); released with the ring.</summary>
    public static BlkifRing Connect(BlkifConnectParameters parameters, IXenDevices devices, IBlockImage image, BlkifRingOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        var backend = new BlockBackend(image, new BlockBackendOptions { Name = $"blkif {parameters?.Domid}/{parameters?.Devid}", Logger = logger });
        try
        {
            return Connect(parameters!, devices, backend, ownsBackend: true, options, logger);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Maps the ring pages, binds the event channel and starts the ring thread, serving <paramref name="backend"/> (the
    /// VBD's, shared with its NBD endpoints). Throws <see cref="BlkifConnectException"/> with the errno tapdisk would
    /// answer (EINVAL for a bad order, domid or max segments; EPROTONOSUPPORT; the map or bind errno).
    /// </summary>
    public static BlkifRing Connect(BlkifConnectParameters parameters, IXenDevices devices, BlockBackend backend, BlkifRingOptions? options = null, ILogger? logger = null) =>
        Connect(parameters, devices, backend, ownsBackend: false, options, logger);

    private static BlkifRing Connect(BlkifConnectParameters parameters, IXenDevices devices, BlockBackend backend, bool ownsBackend, BlkifRingOptions? options, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(devices);
        ArgumentNullException.ThrowIfNull(backend);
        options ??= new BlkifRingOptions();
        logger ??= Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        if (parameters.Protocol is not (BlkifProtocol.Native or BlkifProtocol.X86 or BlkifProtocol.X64))
        {
            throw new BlkifConnectException(EPROTONOSUPPORT, $"unknown ring protocol {(int)parameters.Protocol}");
        }

        if (!BlkifRingGeometry.TryCreate(parameters.Protocol, parameters.Order, out BlkifRingGeometry geometry))
        {
            throw new BlkifConnectException(Errno.EINVAL, $"ring-page-order {parameters.Order} is outside 0..{BlkifRingGeometry.MaxRingPageOrder}");
        }

        if (parameters.RingRefs.Length < geometry.Pages)
        {
            throw new BlkifConnectException(Errno.EINVAL, $"{geometry.Pages} ring pages need as many grant refs, got {parameters.RingRefs.Length}");
        }

        // The grant-copy descriptor carries a 16-bit domid.
        if (parameters.Domid > ushort.MaxValue)
        {
            throw new BlkifConnectException(Errno.EINVAL, $"domain id {parameters.Domid} out of range");
        }

        if (options.MaxIndirectSegments < 0 || options.MaxIndirectSegments > BlkifConstants.MaxIndirectPagesPerRequest * BlkifRingGeometry.SegmentsPerIndirectPage)
        {
            throw new BlkifConnectException(Errno.EINVAL, $"max indirect segments {options.MaxIndirectSegments} out of range");
        }

        IGrantDevice? grants = null;
        IEventChannel? channel = null;
        MappedRegion? mapping = null;
        try
        {
            grants = devices.OpenGrantDevice();
            mapping = grants.MapGrantRefs(parameters.Domid, parameters.RingRefs.AsSpan(0, geometry.Pages), writable: true);
            channel = devices.OpenEventChannel();
            uint port = channel.BindInterdomain(parameters.Domid, parameters.RemotePort);
            var ring = new BlkifRing(parameters, options, geometry, grants, channel, mapping, port, backend, ownsBackend, logger);
            Log.Connected(logger, parameters.Domid, parameters.Devid, geometry.Pages, geometry.SlotCount, parameters.Protocol, port);

            // A paused VBD stops intake at its gate; the resume wakes the ring thread to look again.
            backend.AddResumeListener(ring._wake);
            ring._thread.Start();
            return ring;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            mapping?.Dispose();
            channel?.Dispose();
            grants?.Dispose();
            throw new BlkifConnectException(StorageErrors.ToErrno(e), $"connecting ring {parameters.Domid}/{parameters.Devid}: {e.Message}", e);
        }
    }

    public BlkifRingStats GetStats() => new(
        Volatile.Read(ref _requestsIn),
        Volatile.Read(ref _responsesOut),
        Volatile.Read(ref _kicksIn),
        Volatile.Read(ref _kicksOut),
        Volatile.Read(ref _errorsMessage),
        Volatile.Read(ref _errorsMap),
        Volatile.Read(ref _errorsVbd),
        Volatile.Read(ref _errorsImage));

    private void Run()
    {
        Span<uint> ports = stackalloc uint[16];
        try
        {
            RunLoop(ports);
        }
        finally
        {
            // No request is left at the image here (the loop ends only when no slot is in use): nothing to drain but
            // the event poll, which closing the ring drops.
            Interlocked.Exchange(ref _loop, null)?.Dispose();
        }
    }

    private void RunLoop(Span<uint> ports)
    {
        StartLoop();
        while (true)
        {
            try
            {
                // Work until nothing moves: completions may free slots or end a drain, which lets intake go on.
                bool progress;
                do
                {
                    ProcessCompletions();
                    progress = TryStartDrain();
                    progress |= Intake();
                }
                while (progress || Volatile.Read(ref _completed) is not null);

                Publish();
                if (_stopRequested && SlotsInUse == 0)
                {
                    break;
                }

                WaitForEvents();
                HandleEvents(ports);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A bug in our own loop: stop serving this ring, keep draining what the image still holds, never take the process down.
                Log.LoopFailed(_logger, Domid, Devid, e);
                Volatile.Write(ref _broken, true);

                // The request the failed pass was accepting holds a slot and an entry in the VBD's gate: give both
                // back, or the VBD could never pause again.
                if (_accepting is { InUse: true } held)
                {
                    Finish(held, BlkifConstants.RspError);
                }

                _accepting = null;
                if (++_loopFailures >= MaxLoopFailures)
                {
                    RunDead(ports);
                    return;
                }
            }
        }

        try
        {
            Release();
        }
        finally
        {
            Log.Disconnected(_logger, Domid, Devid);
            _stopped.TrySetResult();
        }
    }

    private void StartLoop()
    {
        if (_channel.PendingHandle is null)
        {
            return;
        }

        try
        {
            // Full fence: a completion pushed by a worker before this either reads the loop or is seen by the first pass.
            Interlocked.Exchange(ref _loop, IoLoop.TryCreateForCurrentThread());
        }
        catch (IOException e)
        {
            // A per-ring limit (locked memory, descriptors): this ring keeps the evtchn wait and the I/O workers.
            Log.LoopUnavailable(_logger, Domid, Devid, e);
        }
    }

    /// <summary>Sleeps until the frontend may have kicked, a completion was pushed, or (with a loop) some of this ring's I/O completed.</summary>
#pragma warning disable CA2012 // The poll's ValueTask is kept across waits and consumed once, when it completes.
    private void WaitForEvents()
    {
        IoLoop? loop = _loop;
        if (loop is null)
        {
            _channel.Wait(-1);
            return;
        }

        if (!_polling)
        {
            _eventPoll = loop.PollAsync(_channel.PendingHandle!, FdPoll.Readable);
            _polling = true;
        }

        loop.RunOnce();
        if (_eventPoll.IsCompleted)
        {
            _polling = false;

            // The events seen, or an error of the poll itself: either way HandleEvents reads what is pending next.
            _ = _eventPoll.GetAwaiter().GetResult();
        }
    }
#pragma warning restore CA2012

    /// <summary>Wakes the ring thread from any thread (a completion pushed, a resume, a disconnect).</summary>
    private void Wake()
    {
        IoLoop? loop = Volatile.Read(ref _loop);
        if (loop is not null)
        {
            loop.Wake();
        }
        else
        {
            _channel.Wake();
        }
    }

    private void HandleEvents(Span<uint> ports)
    {
        int n = _channel.ReadPending(ports);
        if (n < 0)
        {
            if (-n == Errno.EFBIG)
            {
                // The per-fd queue overflowed: reset it; the loop rescans the ring on its next pass anyway.
                _ = _channel.Reset();
                return;
            }

            Log.EventChannelError(_logger, Domid, Devid, -n);
            return;
        }

        for (int i = 0; i < n; i++)
        {
            if (ports[i] != _localPort)
            {
                continue; // Not ours (cannot happen with one fd per ring): left masked, as tapdisk does.
            }

            _kicksIn++;

            // Unmask before processing: with the final check in Intake no wake-up is lost (control-xen.md 2.3).
            int errno = _channel.Unmask(_localPort);
            if (errno != 0)
            {
                Log.EventChannelError(_logger, Domid, Devid, errno);
            }
        }
    }

    /// <summary>
    /// The loop failed for good: answer nothing more, but keep giving back the slots (and gate entries) of requests the
    /// image still holds as they complete, so the VBD can still pause and close; release the ring once all are back
    /// and a disconnect was asked for. Buffers are never freed under a running I/O.
    /// </summary>
    private void RunDead(Span<uint> ports)
    {
        if (_drainSlot is { InUse: true, DrainStarted: false } waiting)
        {
            ReleaseSlot(waiting);
        }

        while (true)
        {
            BlkifRequestSlot? slot = Interlocked.Exchange(ref _completed, null);
            while (slot is not null)
            {
                BlkifRequestSlot? next = slot.Next;
                slot.Next = null;
                ReleaseSlot(slot);
                slot = next;
            }

            if (_stopRequested && SlotsInUse == 0)
            {
                break;
            }

            WaitForEvents();

            // Drained, not unmasked: the frontend's kicks stay silent from now on.
            _ = _channel.ReadPending(ports);
        }

        try
        {
            Release();
        }
        finally
        {
            Log.Disconnected(_logger, Domid, Devid);
            _stopped.TrySetResult();
        }
    }

    /// <summary>Requests taken from the ring and not yet answered (each holds one slot and one entry in the VBD's gate).</summary>
    private int SlotsInUse => _slots.Length - _freeCount;

    private void Release()
    {
        _backend.RemoveResumeListener(_wake);
        if (_ownsBackend)
        {
            _backend.Dispose();
        }

        _ = _channel.Unbind(_localPort);
        _channel.Dispose();
        _mapping.Dispose();
        _grants.Dispose();
        foreach (BlkifRequestSlot slot in _slots)
        {
            ((IDisposable?)slot.Buffer)?.Dispose();
            ((IDisposable?)slot.IndirectPages)?.Dispose();
            slot.Buffer = null;
            slot.IndirectPages = null;
        }
    }

    private const int EPROTONOSUPPORT = 93;

    /// <summary>Rate-limited per ring (<see cref="LogRateLimiter"/>): reports what the last window dropped first.</summary>
    private bool MayLog()
    {
        bool may = _logLimit.TryTake(out long suppressed);
        if (suppressed > 0)
        {
            Log.Suppressed(_logger, Domid, Devid, suppressed);
        }

        return may;
    }
}
