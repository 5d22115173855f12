using Tapdisk.Abi;
using Tapdisk.Control;
using Tapdisk.Filters.Cache;
using Tapdisk.Logging;
using Tapdisk.Nbd;

namespace Tapdisk.Daemon;

/// <summary>
/// The tapdisk process: its VBDs and the control protocol (control-xen.md 3.4). PID, LIST and STATS are served at
/// once; every other request runs alone, in arrival order, while NBD I/O and the reentrant requests carry on.
/// </summary>
internal sealed partial class TapdiskHost : IControlHandler, IAsyncDisposable
{
    private static readonly TimeSpan s_drainTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan s_trailerTimeout = TimeSpan.FromSeconds(10);

    private readonly SemaphoreSlim _exclusive = new(1, 1);
    private readonly Lock _lock = new();
    private readonly List<Vbd> _vbds = [];
    private readonly TaskCompletionSource _lastDetached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ProcessLog _log;
    private readonly NbdServerOptions _nbdOptions = new();

    /// <summary>The process-wide shared parent cache (ADD_CACHE, TAPDISK_PARENT_CACHE_MB); null when set to 0.</summary>
    private readonly ParentCache? _parentCache;

    public TapdiskHost(ProcessLog log)
    {
        _log = log;
        _parentCache = ParentCache.FromEnvironment(
            Environment.GetEnvironmentVariable(ParentCache.BudgetVariable),
            out string? cacheError,
            Environment.GetEnvironmentVariable(ParentCache.HotTierVariable));
        if (cacheError is not null)
        {
            _log.Warning(cacheError);
        }
    }

    /// <summary>Completes when the VBD list becomes empty after a removal: the process then exits (control-xen.md 4.4).</summary>
    public Task LastDetached => _lastDetached.Task;

    public int Pid { get; } = Environment.ProcessId;

    /// <summary>The ctl&lt;pid&gt; server, closed by the DETACH that empties the process before that DETACH is answered.</summary>
    public ControlServer? ControlServer { get; set; }

    public async Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        TapdiskMessageType type = request.Type;
        switch (type)
        {
            case TapdiskMessageType.Pid:
                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.PidResponse, request.Cookie) { Pid = Pid }, cancellationToken).ConfigureAwait(false);
                return;
            case TapdiskMessageType.List:
                await connection.SendAsync(ListReply(request.Cookie), cancellationToken).ConfigureAwait(false);
                return;
            case TapdiskMessageType.Stats:
                await connection.SendAsync(StatsReply(request.Cookie), cancellationToken).ConfigureAwait(false);
                return;
            case TapdiskMessageType.Attach or TapdiskMessageType.Open or TapdiskMessageType.Pause or TapdiskMessageType.Resume
                or TapdiskMessageType.Close or TapdiskMessageType.ForceShutdown or TapdiskMessageType.Detach
                or TapdiskMessageType.XenblkifConnect or TapdiskMessageType.XenblkifDisconnect or TapdiskMessageType.DiskInfo:
                break;
            default:
                // No handler: the early rejection the reference gives, cookie 0 (control-xen.md 2.4).
                await connection.SendAsync(TapdiskMessage.ErrorReply(0, Errno.EINVAL), cancellationToken).ConfigureAwait(false);
                return;
        }

        TapdiskMessage reply;
        bool exit = false;
        await _exclusive.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _log.Debug($"received '{TapdiskMessage.Name(type)}' message (uuid = {request.Cookie})");
            (reply, exit) = await DispatchAsync(connection, request, cancellationToken).ConfigureAwait(false);
            if (exit)
            {
                // The process is about to exit: ctl<pid> is unlinked and stops accepting before the DETACH reply
                // leaves, so a tap-ctl list started after destroy returns can neither find nor reach this tapdisk
                // (control-xen.md 4.4, 5.3). blktap gets the same outcome differently: its single-threaded loop
                // stops after this iteration, so a later LIST is never answered (the connection is reset at exit),
                // but its ctl<pid> lingers until exit. The one visible difference: a command aimed at this pid after
                // the reply gets ENOENT from us where blktap could give ECONNREFUSED (control-xen.md 2.1).
                ControlServer?.StopListening();
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A bug in a handler must not take the process down: answer EIO and log it.
            _log.Error($"{TapdiskMessage.Name(type)} for minor {request.Cookie} failed unexpectedly: {e}");
            reply = TapdiskMessage.ErrorReply(request.Cookie, Errno.EIO);
        }
        finally
        {
            _exclusive.Release();
        }

        try
        {
            await connection.SendAsync(reply, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (exit)
            {
                _lastDetached.TrySetResult();
            }
        }
    }

    private async Task<(TapdiskMessage Reply, bool Exit)> DispatchAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        ushort cookie = request.Cookie;
        int minor = cookie;
        switch (request.Type)
        {
            case TapdiskMessageType.Attach:
                return (await AttachAsync(minor).ConfigureAwait(false), false);
            case TapdiskMessageType.Open:
                return (await OpenAsync(connection, request, cancellationToken).ConfigureAwait(false), false);
            case TapdiskMessageType.Pause:
                return (await PauseAsync(minor).ConfigureAwait(false), false);
            case TapdiskMessageType.Resume:
                return (await ResumeAsync(connection, request, cancellationToken).ConfigureAwait(false), false);
            case TapdiskMessageType.Close:
            case TapdiskMessageType.ForceShutdown:
                return (await CloseAsync(minor, force: request.Type == TapdiskMessageType.ForceShutdown).ConfigureAwait(false), false);
            case TapdiskMessageType.Detach:
                return Detach(minor);
            case TapdiskMessageType.DiskInfo:
                return (DiskInfo(minor), false);
            case TapdiskMessageType.XenblkifConnect:
                return (ConnectRing(request), false);
            default:
                return (await DisconnectRingAsync(request).ConfigureAwait(false), false);
        }
    }

    private Vbd? Find(int minor)
    {
        lock (_lock)
        {
            return _vbds.Find(v => v.Minor == minor);
        }
    }

    private static TapdiskMessage Ok(TapdiskMessageType type, ushort cookie) => new(type, cookie);

    private static TapdiskMessage Fail(ushort cookie, int errno) => TapdiskMessage.ErrorReply(cookie, errno);

    private async Task<TapdiskMessage> AttachAsync(int minor)
    {
        ushort cookie = (ushort)minor;
        if (Find(minor) is not null)
        {
            return Fail(cookie, Errno.EEXIST);
        }

        string marker = ControlPaths.MinorMarker(minor);
        int errno = PosixFile.TryOpen(marker, OpenFlags.ReadOnly, 0, out SafeFdHandle fd);
        if (errno != 0)
        {
            fd.Dispose();
            _log.Error($"attach minor {minor}: cannot open {marker}: {Errno.Describe(errno)}");

            // The reference answers 1 (EPERM) here: its helper returns -1 rather than an errno (control-xen.md 3.4).
            return Fail(cookie, Errno.EPERM);
        }

        // Held while attached; tap-ctl free takes it non-blocking to see whether the minor is in use.
        int lockErrno = await Task.Run(() => PosixFile.TryLock(fd, exclusive: true)).ConfigureAwait(false);
        if (lockErrno != 0)
        {
            fd.Dispose();
            _log.Error($"attach minor {minor}: {marker} is locked by another tapdisk");
            return Fail(cookie, Errno.EBUSY);
        }

        lock (_lock)
        {
            _vbds.Add(new Vbd(minor, fd));
        }

        _log.Info($"minor {minor}: attached");
        return Ok(TapdiskMessageType.AttachResponse, cookie);
    }

    private (TapdiskMessage Reply, bool Exit) Detach(int minor)
    {
        ushort cookie = (ushort)minor;
        Vbd? vbd = Find(minor);
        if (vbd is null)
        {
            return (Fail(cookie, Errno.ENODEV), false);
        }

        if (vbd.IsOpen)
        {
            return (Fail(cookie, Errno.EBUSY), false);
        }

        bool empty;
        lock (_lock)
        {
            _vbds.Remove(vbd);
            empty = _vbds.Count == 0;
        }

        vbd.MarkerLock.Dispose();
        _log.Info($"minor {minor}: detached");
        return (Ok(TapdiskMessageType.DetachResponse, cookie), empty);
    }

    private TapdiskMessage DiskInfo(int minor)
    {
        Vbd? vbd = Find(minor);
        if (vbd is null)
        {
            return Fail((ushort)minor, Errno.ENODEV);
        }

        return new TapdiskMessage(TapdiskMessageType.DiskInfoResponse, (ushort)minor) { ImageSectors = vbd.Sectors, ImageSectorSize = vbd.SectorSize, ImageInfo = vbd.Info };
    }

    public async ValueTask DisposeAsync()
    {
        // SIGTERM/SIGINT: close every VBD cleanly (footers written), release the markers. Unlike the reference,
        // SIGTERM is handled, and no socket is left behind (control-xen.md 4.3).
        List<Vbd> vbds;
        lock (_lock)
        {
            vbds = [.. _vbds];
            _vbds.Clear();
        }

        foreach (Vbd vbd in vbds)
        {
            await CloseVbdAsync(vbd, force: false).ConfigureAwait(false);
            vbd.MarkerLock.Dispose();
        }

        _exclusive.Dispose();
    }
}
