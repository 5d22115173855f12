using Tapdisk.Abi;
using Tapdisk.Control;
using Tapdisk.Drivers.Nbd;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Filters.Cache;
using Tapdisk.Filters.Mirror;
using Tapdisk.Nbd;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

internal sealed partial class TapdiskHost
{
    private const int EALREADY = 114;
    private const int EMEDIUMTYPE = 124;
    private const int LogPathLength = 256;

    private async Task<TapdiskMessage> OpenAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        ushort cookie = request.Cookie;
        Vbd? vbd = Find(cookie);
        if (vbd is null)
        {
            // The reference answers EINVAL, not ENODEV, for OPEN on an unattached minor (control-xen.md 3.4).
            return Fail(cookie, Errno.EINVAL);
        }

        if (vbd.IsOpen)
        {
            return Fail(cookie, EALREADY);
        }

        TapdiskOpenFlags flags = request.ParamsFlags;
        (int trailerErrno, string? logPath, byte[]? key) = await ReadTrailersAsync(connection, flags, allowKey: true, cancellationToken).ConfigureAwait(false);
        if (trailerErrno != 0)
        {
            return Fail(cookie, trailerErrno);
        }

        VhdKey? vhdKey;
        try
        {
            int unsupported = CheckSupported(vbd.Minor, flags);
            if (unsupported != 0)
            {
                return Fail(cookie, unsupported);
            }

            vhdKey = key is null ? null : new VhdKey(key);
        }
        finally
        {
            if (key is not null)
            {
                System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
            }
        }

        string parameters = request.ParamsPath ?? string.Empty;
        vbd.Flags = flags;
        vbd.Key = vhdKey;
        vbd.SecondaryParams = (flags & TapdiskOpenFlags.Secondary) != 0 ? SecondaryOrNull(request.ParamsSecondary) : null;
        vbd.SecondaryMode = (flags & TapdiskOpenFlags.Standby) != 0 ? SecondaryMode.Standby : SecondaryMode.Mirror;
        vbd.SecondaryState = new SecondaryState(EnospcSignalPaths.For(vbd.Minor));
        IBlockImage image;
        try
        {
            // blktap keys parent stacking on prt_devnum >= 0, not on the REUSE_PRT flag (control-xen.md 3.3).
            vbd.ParentSocket = request.ParamsParentMinor >= 0 ? FindParentSocket(vbd.Minor, request.ParamsParentMinor) : null;
            image = OpenChain(vbd, parameters, logPath, Secondary(vbd, vbd.SecondaryParams, vbd.SecondaryMode, vbd.SecondaryState));
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            // The message names files and rules only; keys never reach errors or logs.
            _log.Error($"minor {vbd.Minor}: open {parameters}{(logPath is null ? string.Empty : $" with CBT log {logPath}")}{(vbd.SecondaryParams is null ? string.Empty : $" with secondary {vbd.SecondaryParams}")}{(vbd.ParentSocket is null ? string.Empty : $" stacked on {vbd.ParentSocket}")} failed: {e.Message}");
            vbd.ParentSocket = null;
            DropKey(vbd);
            vbd.SecondaryParams = null;
            vbd.SecondaryState = null;
            return Fail(cookie, StorageErrors.ToErrno(e));
        }

        vbd.LogPath = logPath;

        var backend = new BlockBackend(image, new BlockBackendOptions { Name = $"minor {vbd.Minor}", Logger = LibraryLogger });
        vbd.Backend = backend;
        vbd.ChainOpen = true;
        vbd.Sectors = (ulong)(image.SizeBytes / IoLimits.SectorSize);
        vbd.SectorSize = IoLimits.SectorSize;
        vbd.Info = 0; // As the reference: RDONLY does not set VDISK_READONLY in info (control-xen.md 2.3).
        try
        {
            StartNbd(vbd, backend);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            _log.Error($"minor {vbd.Minor}: cannot start NBD endpoints: {e.Message}");
            await StopNbdAsync(vbd).ConfigureAwait(false);
            UnpublishAllStats(vbd);
            await backend.CloseImageAsync().ConfigureAwait(false);
            backend.Dispose();
            vbd.Backend = null;
            vbd.ChainOpen = false;
            vbd.ParentSocket = null;
            DropKey(vbd);
            vbd.SecondaryParams = null;
            vbd.SecondaryState = null;
            return Fail(cookie, StorageErrors.ToErrno(e));
        }

        vbd.Params = parameters;
        vbd.State = VbdState.None;
        PublishVdiStats(vbd);
        _log.Info($"minor {vbd.Minor}: opened {parameters} ({image.SizeBytes} bytes{(image.IsReadOnly ? ", read-only" : string.Empty)}){DescribeSecondary(vbd)}");
        return new TapdiskMessage(TapdiskMessageType.OpenResponse, cookie) { ImageSectors = vbd.Sectors, ImageSectorSize = vbd.SectorSize, ImageInfo = vbd.Info };
    }

    /// <summary>Reads what follows OPEN/RESUME: a 256-byte log path with ADD_LOG, then u8 length + key with OPEN_ENCRYPTED.</summary>
    private static async Task<(int Errno, string? LogPath, byte[]? Key)> ReadTrailersAsync(ControlConnection connection, TapdiskOpenFlags flags, bool allowKey, CancellationToken cancellationToken)
    {
        string? logPath = null;
        if ((flags & TapdiskOpenFlags.AddLog) != 0)
        {
            byte[] trailer = new byte[LogPathLength];
            if (!await connection.TryReadExactlyAsync(trailer, s_trailerTimeout, cancellationToken).ConfigureAwait(false))
            {
                return (Errno.EIO, null, null);
            }

            // A C string in at most 255 bytes (the reference forces the last byte to NUL); an empty path is refused.
            int end = Array.IndexOf(trailer, (byte)0, 0, LogPathLength - 1);
            logPath = System.Text.Encoding.UTF8.GetString(trailer, 0, end < 0 ? LogPathLength - 1 : end);
            if (logPath.Length == 0)
            {
                return (Errno.EINVAL, null, null);
            }
        }

        if (allowKey && (flags & TapdiskOpenFlags.OpenEncrypted) != 0)
        {
            byte[] length = new byte[1];
            if (!await connection.TryReadExactlyAsync(length, s_trailerTimeout, cancellationToken).ConfigureAwait(false))
            {
                return (Errno.EIO, null, null);
            }

            if (length[0] is 0 or > 128)
            {
                return (Errno.EINVAL, null, null);
            }

            // Pinned so the GC never leaves a copy behind; zeroed as soon as the VhdKey has its own pinned copy.
            byte[] key = GC.AllocateArray<byte>(length[0], pinned: true);
            if (!await connection.TryReadExactlyAsync(key, s_trailerTimeout, cancellationToken).ConfigureAwait(false))
            {
                System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
                return (Errno.EIO, null, null);
            }

            return (0, logPath, key);
        }

        return (0, logPath, null);
    }

    /// <summary>Features this build does not have are refused with a clear reason, never silently dropped.</summary>
    private int CheckSupported(int minor, TapdiskOpenFlags flags)
    {
        if ((flags & TapdiskOpenFlags.AddCache) != 0 && _parentCache is null)
        {
            // Asked for, but switched off for this process: refused, never accepted and ignored.
            _log.Error($"minor {minor}: the shared parent cache (ADD_CACHE) is off in this tapdisk ({ParentCache.BudgetVariable}=0)");
            return Errno.ENOSYS;
        }

        if ((flags & TapdiskOpenFlags.AddCache) != 0 && (flags & TapdiskOpenFlags.OpenEncrypted) != 0)
        {
            // A per-open key is a per-VBD view of the parent's bytes: one shared cache cannot serve it.
            _log.Error($"minor {minor}: the shared parent cache (ADD_CACHE) is not supported with a per-open key");
            return Errno.ENOSYS;
        }

        return 0;
    }

    private IBlockImage OpenChain(Vbd vbd, string parameters, string? logPath, SecondarySpec? secondary)
    {
        var options = new ImageOpenOptions
        {
            ReadOnly = (vbd.Flags & TapdiskOpenFlags.ReadOnly) != 0,
            DirectIo = (vbd.Flags & TapdiskOpenFlags.NoODirect) == 0,
            ParentOverride = vbd.ParentSocket is null ? null : new ImageParams(NbdImageDriver.DriverName, vbd.ParentSocket),
        };
        // The shared parent cache: for ADD_CACHE VBDs, or every VBD when TAPDISK_PARENT_CACHE_MB sets a budget; never
        // under a per-open key (its plaintext is that VBD's view alone).
        ParentCache? parentCache = _parentCache is { } cache && vbd.Key is null && ((vbd.Flags & TapdiskOpenFlags.AddCache) != 0 || cache.ForEveryVbd) ? cache : null;
        IBlockImage image = DiskTypes.Open(parameters, options, vbd.Key is null ? null : new VhdCryptoOptions { Key = vbd.Key }, logPath, secondary,
            (vbd.Flags & TapdiskOpenFlags.AddLcache) != 0, LibraryLogger, parentCache);
        if (vbd.ParentSocket is not null && !HasLayer(image, NbdImageDriver.DriverName, vbd.ParentSocket))
        {
            // Only a format with a parent reads through one; blktap would stack a parent nothing ever reads.
            image.Dispose();
            throw new ImageOpenException(parameters, Errno.EINVAL, $"-e: the leaf has no parent to replace with {vbd.ParentSocket} (only a differencing VHD can be stacked on another VBD)");
        }

        return image;
    }

    private static bool HasLayer(IBlockImage? image, string driverName, string path)
    {
        for (; image is not null; image = image.Parent)
        {
            if (image.DriverName == driverName && image.Path == path)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// blktap's lookup for prt_devnum (control-xen.md 3.3): the NBD socket nbd&lt;pid&gt;.&lt;minor&gt; of whichever tapdisk
    /// serves that minor; exactly one must exist (none ENOENT, several EINVAL). A VBD cannot be its own parent.
    /// </summary>
    private static string FindParentSocket(int minor, int parentMinor)
    {
        if (parentMinor == minor)
        {
            throw new ImageOpenException($"minor {parentMinor}", Errno.EINVAL, "-e names the VBD being opened as its own parent");
        }

        string suffix = "." + parentMinor.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var matches = new List<string>();
        foreach (string path in Directory.EnumerateFiles(ControlPaths.Root, "nbd*" + suffix))
        {
            string name = Path.GetFileName(path);
            string pid = name[3..^suffix.Length];
            if (pid.Length > 0 && pid.All(char.IsAsciiDigit))
            {
                matches.Add(path);
            }
        }

        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new ImageOpenException($"minor {parentMinor}", Errno.ENOENT, $"-e {parentMinor}: no tapdisk serves minor {parentMinor} (no nbd<pid>.{parentMinor} in {ControlPaths.Root})"),
            _ => throw new ImageOpenException($"minor {parentMinor}", Errno.EINVAL, $"-e {parentMinor}: several tapdisks serve minor {parentMinor}: {string.Join(", ", matches)}"),
        };
    }

    /// <summary>params.secondary as a "type:path", or null for none (empty, or blktap's literal "null").</summary>
    private static string? SecondaryOrNull(string? secondary) => secondary is null or "" or "null" ? null : secondary;

    private SecondarySpec? Secondary(Vbd vbd, string? parameters, SecondaryMode mode, SecondaryState state) =>
        parameters is null ? null : new SecondarySpec(parameters, mode, state, LibraryLogger, $"minor {vbd.Minor}",
            e => _log.Error($"minor {vbd.Minor}: secondary {parameters} cannot be opened ({e.Message}); serving without it (nbd_mirror_failed 1)"));

    private static string DescribeSecondary(Vbd vbd) =>
        vbd.SecondaryParams is null ? string.Empty : $", secondary {vbd.SecondaryParams} ({(vbd.SecondaryMode == SecondaryMode.Standby ? "standby" : "mirror")})";

    private void StartNbd(Vbd vbd, BlockBackend backend)
    {
        var export = new NbdExport("tapdisk_client", $"tapdisk minor {vbd.Minor}", backend);

        // Two server objects, as blktap's "new" and "old" servers, each with its own statistics page.
        var server = new NbdServer(export, _nbdOptions, LibraryLogger);
        var oldServer = new NbdServer(export, _nbdOptions, LibraryLogger);
        PublishNbdStats(vbd, server, oldServer);

        // Both of blktap's UNIX endpoints speak fixed newstyle (data-plane.md 6.1).
        vbd.Endpoints.Add(NbdUnixListener.Start(ControlPaths.NbdSocket(Pid, vbd.Minor), server));
        vbd.Endpoints.Add(NbdUnixListener.Start(ControlPaths.NbdOldSocket(Pid, vbd.Minor), oldServer));

        // The fd receivers: a peer (xapi) hands over an already-connected client; the "old" server's receiver greets
        // it oldstyle, the "new" one fixed newstyle.
        vbd.Endpoints.Add(NbdUnixListener.StartFdReceiver(ControlPaths.NbdServerSocket(Pid, vbd.Minor), oldServer, NbdHandshakeStyle.Oldstyle));
        vbd.Endpoints.Add(NbdUnixListener.StartFdReceiver(ControlPaths.NbdServerNewSocket(Pid, vbd.Minor), server, NbdHandshakeStyle.FixedNewstyle));
    }

    private static async Task StopNbdAsync(Vbd vbd)
    {
        foreach (IAsyncDisposable endpoint in vbd.Endpoints)
        {
            await endpoint.DisposeAsync().ConfigureAwait(false);
        }

        vbd.Endpoints.Clear();
    }

    private async Task<TapdiskMessage> PauseAsync(int minor)
    {
        ushort cookie = (ushort)minor;
        Vbd? vbd = Find(minor);
        if (vbd is null)
        {
            return Fail(cookie, Errno.ENODEV);
        }

        if ((vbd.State & VbdState.Paused) != 0 || vbd.Backend is not { } backend || !vbd.ChainOpen)
        {
            return Ok(TapdiskMessageType.PauseResponse, cookie);
        }

        vbd.State |= VbdState.PauseRequested;
        if (!await DrainAsync(vbd, backend, "pause").ConfigureAwait(false))
        {
            vbd.State &= ~VbdState.PauseRequested;
            backend.Resume();
            return Fail(cookie, Errno.EBUSY);
        }

        // Pausing closes the chain so the toolstack can snapshot the files (vhd-util snapshot, then RESUME); the
        // backend keeps its gate shut, its counters and its frontends (NBD clients, rings) meanwhile.
        try
        {
            await backend.CloseImageAsync().ConfigureAwait(false);
        }
        finally
        {
            // Closed or failing to close, the stack is not used again (CLOSE must not dispose it a second time).
            vbd.ChainOpen = false;
        }

        vbd.State = VbdState.Closed | VbdState.Quiesced | VbdState.Paused;
        UnpublishVdiStats(vbd);
        _log.Info($"minor {minor}: paused");
        return Ok(TapdiskMessageType.PauseResponse, cookie);
    }

    /// <summary>
    /// Shuts the VBD's one gate (NBD and ring requests alike) and waits, bounded, for the requests inside; false, with a
    /// log line saying what it waited for, on timeout.
    /// </summary>
    private async Task<bool> DrainAsync(Vbd vbd, BlockBackend backend, string what)
    {
        int inFlight = backend.InFlight;
        try
        {
            await backend.PauseAsync().WaitAsync(s_drainTimeout).ConfigureAwait(false);
            _log.Debug($"minor {vbd.Minor}: {what}: drained {inFlight} requests in flight");
            return true;
        }
        catch (TimeoutException)
        {
            _log.Error($"minor {vbd.Minor}: {what}: {backend.InFlight} requests still in flight after {s_drainTimeout.TotalSeconds} s");
            return false;
        }
    }

    private async Task<TapdiskMessage> ResumeAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        ushort cookie = request.Cookie;
        Vbd? vbd = Find(cookie);
        if (vbd is null)
        {
            return Fail(cookie, Errno.ENODEV);
        }

        (int trailerErrno, string? logPath, _) = await ReadTrailersAsync(connection, request.ParamsFlags, allowKey: false, cancellationToken).ConfigureAwait(false);
        if (trailerErrno != 0)
        {
            return Fail(cookie, trailerErrno);
        }

        if ((vbd.State & VbdState.Paused) == 0)
        {
            return Fail(cookie, Errno.EINVAL);
        }

        int unsupported = CheckSupported(vbd.Minor, request.ParamsFlags);
        if (unsupported != 0)
        {
            return Fail(cookie, unsupported);
        }

        // The secondary (storage migration: unpause -2 <dest> starts the mirror, unpause -2 null ends it). As blktap,
        // a RESUME without -2 keeps the VBD's secondary and reopens it with the chain. Unlike blktap, the change is
        // made only if the resume succeeds (control-xen.md 9, item 14), a secondary that failed is not reopened
        // silently (the writes it missed would make a mirror that looks whole), and one that holds writes the full
        // primary could not take is never removed or replaced (EBUSY): its data would be lost.
        SecondaryState secondaryState = vbd.SecondaryState ?? new SecondaryState(EnospcSignalPaths.For(vbd.Minor));
        string? secondary = secondaryState.MirrorFailed != 0 ? null : vbd.SecondaryParams;
        SecondaryMode secondaryMode = vbd.SecondaryMode;
        if ((request.ParamsFlags & TapdiskOpenFlags.Secondary) != 0)
        {
            string? requested = SecondaryOrNull(request.ParamsSecondary);
            if (secondaryState.HoldsRedirectedData && requested != vbd.SecondaryParams)
            {
                _log.Error($"minor {vbd.Minor}: secondary {vbd.SecondaryParams} holds writes the full primary could not take; it cannot be {(requested is null ? "removed" : $"replaced by {requested}")}");
                return Fail(cookie, Errno.EBUSY);
            }

            if (requested is not null && (requested != vbd.SecondaryParams || secondaryState.MirrorFailed != 0))
            {
                // A new mirror (or the failed one given again) starts with nbd_mirror_failed 0; removing one keeps its
                // verdict for the toolstack to read.
                secondaryState = new SecondaryState(EnospcSignalPaths.For(vbd.Minor));
            }

            secondary = requested;
            secondaryMode = (request.ParamsFlags & TapdiskOpenFlags.Standby) != 0 ? SecondaryMode.Standby : SecondaryMode.Mirror;
        }

        // With -c the log layer is (re)attached, old bits kept; without it the log is dropped, as blktap's RESUME
        // does (XAPI's snapshot flow switches logs this way). Unlike blktap, a log that cannot be used fails the
        // resume with its reason and leaves the VBD paused with its flags (blktap retries without the log and
        // without any open flag, so a read-only VBD became writable: data-plane.md 7.1).
        string parameters = string.IsNullOrEmpty(request.ParamsPath) ? vbd.Params! : request.ParamsPath;
        IBlockImage image;
        try
        {
            image = OpenChain(vbd, parameters, logPath, Secondary(vbd, secondary, secondaryMode, secondaryState));
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            vbd.State |= VbdState.ResumeFailed;
            _log.Error($"minor {vbd.Minor}: resume with {parameters}{(logPath is null ? string.Empty : $" and CBT log {logPath}")}{(secondary is null ? string.Empty : $" and secondary {secondary}")} failed: {e.Message}");
            return Fail(cookie, StorageErrors.ToErrno(e));
        }

        if ((ulong)(image.SizeBytes / IoLimits.SectorSize) != vbd.Sectors)
        {
            // Unlike the reference, a failed resume keeps the old name, so a retry without -a reopens what was open.
            image.Dispose();
            vbd.State |= VbdState.ResumeFailed;
            _log.Error($"minor {vbd.Minor}: resume with {parameters}: size {image.SizeBytes} bytes differs from {vbd.Sectors * IoLimits.SectorSize}");
            return Fail(cookie, EMEDIUMTYPE);
        }

        vbd.Params = parameters;
        vbd.LogPath = logPath;
        vbd.SecondaryParams = secondary;
        vbd.SecondaryMode = secondaryMode;
        vbd.SecondaryState = secondaryState;
        vbd.State = VbdState.None;
        vbd.ChainOpen = true;
        PublishVdiStats(vbd);
        vbd.Backend!.Resume(image);
        _log.Info($"minor {vbd.Minor}: resumed with {parameters}{DescribeSecondary(vbd)}");
        return Ok(TapdiskMessageType.ResumeResponse, cookie);
    }

    private async Task<TapdiskMessage> CloseAsync(int minor, bool force)
    {
        ushort cookie = (ushort)minor;
        Vbd? vbd = Find(minor);
        if (vbd is null)
        {
            return Fail(cookie, Errno.ENODEV);
        }

        await CloseVbdAsync(vbd, force).ConfigureAwait(false);
        return Ok(TapdiskMessageType.CloseResponse, cookie);
    }

    private async Task CloseVbdAsync(Vbd vbd, bool force)
    {
        if ((vbd.State & VbdState.Paused) != 0)
        {
            _log.Info($"minor {vbd.Minor}: closing while paused");
        }

        // Bounded, unlike the reference's stuck close: after the drain timeout the chain is closed anyway and the
        // requests still running fail; the log says how many there were.
        BlockBackend? backend = vbd.Backend;
        if (!force && backend is not null)
        {
            await DrainAsync(vbd, backend, "close").ConfigureAwait(false);
        }

        await StopNbdAsync(vbd).ConfigureAwait(false);
        await DisconnectRingsAsync(vbd).ConfigureAwait(false);
        UnpublishAllStats(vbd);
        if (backend is not null)
        {
            if (vbd.ChainOpen)
            {
                try
                {
                    await backend.CloseImageAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or ImageFormatException)
                {
                    _log.Error($"minor {vbd.Minor}: closing {vbd.Params}: {e.Message}");
                }
            }

            backend.Dispose();
            vbd.Backend = null;
            vbd.ChainOpen = false;
        }

        if (vbd.Params is not null)
        {
            _log.Info($"minor {vbd.Minor}: closed {vbd.Params}");
        }

        vbd.Params = null;
        vbd.LogPath = null;
        vbd.SecondaryParams = null;
        vbd.SecondaryState = null;
        vbd.ParentSocket = null;
        vbd.State = VbdState.Closed;
        DropKey(vbd);
    }

    /// <summary>Zeroes and forgets the VBD's key (close, or an OPEN that failed).</summary>
    private static void DropKey(Vbd vbd)
    {
        vbd.Key?.Dispose();
        vbd.Key = null;
    }
}
