using Tapdisk.Control;
using Tapdisk.Logging;
using System.Threading.Channels;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback;

/// <summary>
/// The XenStore agent (control-xen.md Part II 5): watches the backend directory, and for every device finds its
/// tapdisk, advertises the features, follows the frontend's state and tells tapdisk to connect or disconnect the
/// ring. One loop handles every event in order; each handler re-reads what it needs, so spurious, repeated or
/// reordered events (and a reconnect to a restarted xenstored) are harmless. A device whose frontend or toolstack
/// keys are wrong is logged and left unconnected; no device can stop another.
/// </summary>
/// <remarks>
/// Deliberate difference: the reference forks one process per frontend domain; this agent serves every domain (or
/// the one given with -x) in one process, isolating devices by handling faults per device instead.
/// </remarks>
internal sealed partial class TapbackAgent
{
    public const string BackendToken = "tapback-back";
    public const string FrontendToken = "tapback-front";
    public const string ReleaseToken = "tapback-release";
    public const string ReleaseDomainPath = "@releaseDomain";

    /// <summary>Lines a repeating fault of one device (a misbehaving frontend) may log per 10 s.</summary>
    public const int LogLinesPerWindow = 10;

    // Events taken from the queue at once; a bound, so a flood cannot delay handling indefinitely.
    private const int MaxEventBatch = 256;

    // Keys only tapback writes under a device: an event for one of them is our own echo and needs no work.
    private static readonly HashSet<string> s_ownKeys = new(StringComparer.Ordinal)
    {
        "kthread-pid", "max-ring-page-order", "feature-barrier", "feature-flush-cache", "feature-discard", "discard-granularity",
        "discard-alignment", "discard-secure", "feature-max-indirect-segments", "sector-size", "physical-sector-size", "sectors", "info",
    };

    private readonly XenStoreClient _xenStore;
    private readonly TapbackOptions _options;
    private readonly TapdiskControl _tapdisks;
    private readonly ProcessLog _log;
    private readonly Dictionary<(uint Domain, uint Device), VbdDevice> _devices = [];
    private readonly Dictionary<string, VbdDevice> _byFrontendState = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private uint _backendDomain;
    private string _basePath = string.Empty;
    private bool _watching;

    public TapbackAgent(XenStoreClient xenStore, TapbackOptions options, ProcessLog log)
    {
        _xenStore = xenStore;
        _options = options;
        _log = log;
        _tapdisks = new TapdiskControl(options.ControlDirectory, options.ControlTimeout);
    }

    /// <summary>Completes once the backend watch is registered (what the daemon waits for before detaching).</summary>
    public Task Started => _started.Task;

    /// <summary>The directory watched: <c>/local/domain/&lt;B&gt;/backend/&lt;name&gt;</c>, absolute as the spec advises.</summary>
    public string BasePath => _basePath;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _backendDomain = _options.BackendDomain ?? await ReadOwnDomainAsync(cancellationToken).ConfigureAwait(false);
        _basePath = $"/local/domain/{_backendDomain}/backend/{_options.BackendName}";
        await RegisterWatchesAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var batch = new List<(XenStoreEvent Event, (uint Domain, uint Device)? Device)>();
            var lastForDevice = new Dictionary<(uint, uint), int>();
            ChannelReader<XenStoreEvent> events = _xenStore.Events;
            while (await events.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                // A toolstack writes a device's nodes one by one (libxl: about fifteen), and every write is a watch
                // event. Reconciling reads the device's whole state, so of the events for one device waiting
                // together only the last needs handling: an attach took ~240 requests to xenstored, one full
                // re-read per event. Other events keep their order and are never dropped.
                batch.Clear();
                lastForDevice.Clear();
                while (batch.Count < MaxEventBatch && events.TryRead(out XenStoreEvent e))
                {
                    (uint Domain, uint Device)? device = ReconciledDevice(e);
                    if (device is { } d)
                    {
                        lastForDevice[d] = batch.Count;
                    }

                    batch.Add((e, device));
                }

                for (int i = 0; i < batch.Count; i++)
                {
                    if (batch[i].Device is not { } device || lastForDevice[device] == i)
                    {
                        await HandleAsync(batch[i].Event, batch[i].Device, cancellationToken).ConfigureAwait(false);
                    }
                }
            }
        }
        finally
        {
            _started.TrySetCanceled(CancellationToken.None);
        }
    }

    private async Task<uint> ReadOwnDomainAsync(CancellationToken cancellationToken)
    {
        // The relative key "domid" resolves against our own domain's directory; dom0 may not have it (then 0).
        while (true)
        {
            try
            {
                string? text = await _xenStore.TryReadAsync("domid", cancellationToken: cancellationToken).ConfigureAwait(false);
                return StrictNumber.TryParseUInt32(text, out uint domid) ? domid : 0;
            }
            catch (XenStoreConnectionLostException)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task RegisterWatchesAsync(CancellationToken cancellationToken)
    {
        string watched = _options.FrontendDomain is { } only ? $"{_basePath}/{only}" : _basePath;
        try
        {
            await _xenStore.WatchAsync(watched, BackendToken, cancellationToken).ConfigureAwait(false);
            await _xenStore.WatchAsync(ReleaseDomainPath, ReleaseToken, cancellationToken).ConfigureAwait(false);
            _watching = true;
            _log.Info($"watching {watched}");
            _started.TrySetResult();
        }
        catch (XenStoreConnectionLostException)
        {
            // Registered on the Reconnected event instead.
            _log.Warning("xenstored went away before the watches were registered; waiting for it");
        }
    }

    /// <summary>
    /// Handles one event; <paramref name="reconciles"/> is the device it reconciles, found when it was read (not looked up
    /// again: an earlier reconcile in the batch may have moved a frontend path to another device).
    /// </summary>
    private async Task HandleAsync(XenStoreEvent e, (uint Domain, uint Device)? reconciles, CancellationToken cancellationToken)
    {
        try
        {
            if (reconciles is { } d)
            {
                await ReconcileGuardedAsync(d.Domain, d.Device, cancellationToken).ConfigureAwait(false);
                return;
            }

            switch (e.Kind)
            {
                case XenStoreEventKind.Disconnected:
                    _log.Warning("connection to xenstored lost; reconnecting");
                    return;
                case XenStoreEventKind.Reconnected:
                    _log.Info($"reconnected to xenstored ({_xenStore.Endpoint}); re-reading every device");
                    if (!_watching)
                    {
                        await RegisterWatchesAsync(cancellationToken).ConfigureAwait(false);
                    }

                    await ScanAllAsync(cancellationToken).ConfigureAwait(false);
                    return;
            }

            switch (e.Token)
            {
                case BackendToken:
                    await OnBackendEventAsync(e.Path, cancellationToken).ConfigureAwait(false);
                    break;
                case FrontendToken:
                    if (_byFrontendState.TryGetValue(e.Path, out VbdDevice? device))
                    {
                        await ReconcileGuardedAsync(device.FrontendDomain, device.DeviceId, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case ReleaseToken:
                    await OnDomainReleasedAsync(cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
        catch (XenStoreConnectionLostException)
        {
            // Everything is re-read on the Reconnected event that follows.
            _log.Debug($"xenstored lost while handling {e.Path}");
        }
    }

    private async Task OnBackendEventAsync(string path, CancellationToken cancellationToken)
    {
        if (path == _basePath)
        {
            await ScanAllAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        if (!path.StartsWith(_basePath + "/", StringComparison.Ordinal))
        {
            return;
        }

        string[] parts = path[(_basePath.Length + 1)..].Split('/');
        if (!StrictNumber.TryParseUInt32(parts[0], out uint domain) || !Serves(domain))
        {
            _log.Debug($"ignoring {path}");
            return;
        }

        if (parts.Length == 1)
        {
            await ScanDomainAsync(domain, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (!StrictNumber.TryParseUInt32(parts[1], out uint deviceId))
        {
            _log.Debug($"ignoring {path}: not a device number");
            return;
        }

        if (parts.Length > 2 && s_ownKeys.Contains(parts[2]) && _devices.ContainsKey((domain, deviceId)))
        {
            return;
        }

        await ReconcileGuardedAsync(domain, deviceId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The device an event certainly reconciles (a device's own backend node other than the keys tapback writes, or a
    /// known frontend's state node), or null for any other event.
    /// </summary>
    private (uint Domain, uint Device)? ReconciledDevice(XenStoreEvent e)
    {
        if (e.Kind != XenStoreEventKind.Watch)
        {
            return null;
        }

        if (e.Token == FrontendToken)
        {
            return _byFrontendState.TryGetValue(e.Path, out VbdDevice? known) ? (known.FrontendDomain, known.DeviceId) : null;
        }

        if (e.Token != BackendToken || !e.Path.StartsWith(_basePath + "/", StringComparison.Ordinal))
        {
            return null;
        }

        string[] parts = e.Path[(_basePath.Length + 1)..].Split('/');
        return parts.Length >= 2
            && StrictNumber.TryParseUInt32(parts[0], out uint domain) && Serves(domain)
            && StrictNumber.TryParseUInt32(parts[1], out uint deviceId)
            && (parts.Length == 2 || !s_ownKeys.Contains(parts[2]))
            ? (domain, deviceId)
            : null;
    }

    private bool Serves(uint domain) => _options.FrontendDomain is not { } only || only == domain;

    private async Task ScanAllAsync(CancellationToken cancellationToken)
    {
        var domains = new HashSet<uint>();
        foreach (string name in await _xenStore.TryDirectoryAsync(_basePath, cancellationToken: cancellationToken).ConfigureAwait(false) ?? [])
        {
            if (StrictNumber.TryParseUInt32(name, out uint domain) && Serves(domain))
            {
                domains.Add(domain);
            }
        }

        foreach (VbdDevice device in _devices.Values)
        {
            domains.Add(device.FrontendDomain);
        }

        foreach (uint domain in domains)
        {
            await ScanDomainAsync(domain, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task ScanDomainAsync(uint domain, CancellationToken cancellationToken)
    {
        var devices = new SortedSet<uint>();
        foreach (string name in await _xenStore.TryDirectoryAsync($"{_basePath}/{domain}", cancellationToken: cancellationToken).ConfigureAwait(false) ?? [])
        {
            if (StrictNumber.TryParseUInt32(name, out uint deviceId))
            {
                devices.Add(deviceId);
            }
        }

        foreach (VbdDevice known in _devices.Values)
        {
            if (known.FrontendDomain == domain)
            {
                devices.Add(known.DeviceId);
            }
        }

        foreach (uint deviceId in devices)
        {
            await ReconcileGuardedAsync(domain, deviceId, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reconciles one device; its faults are logged against it and go no further.</summary>
    private async Task ReconcileGuardedAsync(uint domain, uint deviceId, CancellationToken cancellationToken)
    {
        try
        {
            await ReconcileAsync(domain, deviceId, cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException e)
        {
            _log.RateLimited(4, $"vbd3 {domain}/{deviceId}", $"vbd3 {domain}/{deviceId}: xenstore: {e.Message}");
        }
        catch (ControlException e)
        {
            _log.RateLimited(3, $"vbd3 {domain}/{deviceId}", $"vbd3 {domain}/{deviceId}: tapdisk: {e.Message} (errno {e.Errno})");
        }
    }
}
