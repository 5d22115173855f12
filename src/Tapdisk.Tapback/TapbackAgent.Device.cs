using Tapdisk.Control;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback;

internal sealed partial class TapbackAgent
{
    private const uint VdiskCdrom = 1;
    private const uint VdiskReadonly = 4;

    /// <summary>Brings one device in line with XenStore (control-xen.md Part II 5.5); idempotent, writes only what differs.</summary>
    private async Task ReconcileAsync(uint domain, uint deviceId, CancellationToken cancellationToken)
    {
        string backendPath = $"{_basePath}/{domain}/{deviceId}";
        _devices.TryGetValue((domain, deviceId), out VbdDevice? device);
        string? frontendPath = await _xenStore.TryReadAsync(backendPath + "/frontend", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (frontendPath is null)
        {
            if (device is not null && await _xenStore.TryDirectoryAsync(backendPath, cancellationToken: cancellationToken).ConfigureAwait(false) is null)
            {
                await RemoveDeviceAsync(device, "backend directory removed", cancellationToken).ConfigureAwait(false);
            }

            // Otherwise the toolstack has not written the device yet: its next write brings us back.
            return;
        }

        if (device is null)
        {
            device = new VbdDevice(domain, deviceId, backendPath);
            _devices.Add((domain, deviceId), device);
            _log.Info($"{device.Name}: new device at {backendPath}");
            await PublishFeaturesAsync(device, cancellationToken).ConfigureAwait(false);
        }

        if (device.FrontendPath != frontendPath)
        {
            await WatchFrontendAsync(device, frontendPath, cancellationToken).ConfigureAwait(false);
        }

        string? hotplug = await _xenStore.TryReadAsync(backendPath + "/hotplug-status", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (hotplug != "connected")
        {
            // The hotplug script has not finished (or failed: it wrote hotplug-error); nothing goes past state 1.
            _log.Debug($"{device.Name}: hotplug-status {hotplug ?? "(absent)"}; waiting");
            return;
        }

        await ReadConfigurationAsync(device, cancellationToken).ConfigureAwait(false);
        await FindTapdiskAsync(device, cancellationToken).ConfigureAwait(false);
        await FollowFrontendAsync(device, cancellationToken).ConfigureAwait(false);
    }

    private async Task WatchFrontendAsync(VbdDevice device, string frontendPath, CancellationToken cancellationToken)
    {
        if (device.FrontendPath is { } old)
        {
            _byFrontendState.Remove(old + "/state");
            await _xenStore.UnwatchAsync(old + "/state", FrontendToken, cancellationToken).ConfigureAwait(false);
        }

        if (!frontendPath.StartsWith('/'))
        {
            device.FrontendPath = null;
            throw new XenStoreException("EINVAL", $"frontend path '{frontendPath}' is not absolute");
        }

        device.FrontendPath = frontendPath;
        device.FrontendSeen = false;
        _byFrontendState[frontendPath + "/state"] = device;

        // Shared token for every frontend; the event path says which device it is. The watch fires at once.
        await _xenStore.WatchAsync(frontendPath + "/state", FrontendToken, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>mode, device-type and the polling keys, read from the backend directory the toolstack owns.</summary>
    private async Task ReadConfigurationAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        string path = device.BackendPath;
        string? mode = await _xenStore.TryReadAsync(path + "/mode", cancellationToken: cancellationToken).ConfigureAwait(false);

        // device-type comes from the backend copy the toolstack wrote, not the frontend's: a guest must not be able
        // to change the info bits it is given.
        string? type = await _xenStore.TryReadAsync(path + "/device-type", cancellationToken: cancellationToken).ConfigureAwait(false);
        device.ConfigurationFault = (mode, type) switch
        {
            (not (null or "r" or "w"), _) => $"unsupported mode '{mode}'",
            (_, not (null or "disk" or "cdrom")) => $"unsupported device-type '{type}'",
            _ => null,
        };
        device.Online = await _xenStore.TryReadAsync(path + "/online", cancellationToken: cancellationToken).ConfigureAwait(false) != "0";
        device.ReadOnly = mode == "r";
        device.CdRom = type == "cdrom";
        device.PollDuration = await ReadOptionalNumberAsync(path + "/polling-duration", cancellationToken).ConfigureAwait(false);
        device.PollIdleThreshold = await ReadOptionalNumberAsync(path + "/polling-idle-threshold", cancellationToken).ConfigureAwait(false);
    }

    private async Task<uint> ReadOptionalNumberAsync(string path, CancellationToken cancellationToken)
    {
        string? text = await _xenStore.TryReadAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (text is null)
        {
            return 0;
        }

        if (!StrictNumber.TryParseUInt32(text, out uint value))
        {
            _log.Warning($"{path}: '{text}' is not a number; using 0");
            return 0;
        }

        return value;
    }

    /// <summary>Finds the tapdisk from physical-device-path (control-xen.md Part II 5.7) and publishes its geometry.</summary>
    private async Task FindTapdiskAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        string? physical = await _xenStore.TryReadAsync(device.BackendPath + "/physical-device-path", cancellationToken: cancellationToken).ConfigureAwait(false);
        bool changed = physical != device.PhysicalDevicePath;
        if (!changed && device.Tapdisk is not null)
        {
            return;
        }

        if (changed && device.Connected && device.Tapdisk is not null)
        {
            // The toolstack moved the device to another tapdisk: the old one must let go of the ring first.
            _log.Warning($"{device.Name}: physical-device-path changed to {physical ?? "(absent)"}; disconnecting the old tapdisk");
            if (!Disconnect(device))
            {
                return;
            }
        }

        device.PhysicalDevicePath = physical;
        device.Tapdisk = null;
        if (physical is null)
        {
            return;
        }

        if (!PhysicalDevicePath.TryParse(physical, out int pid, out int minor))
        {
            if (changed)
            {
                _log.RateLimited(4, device.Name, $"{device.Name}: physical-device-path '{physical}' is not <dir>/nbd<pid>.<minor>");
            }

            return;
        }

        TapdiskDisk disk;
        try
        {
            disk = await Task.Run(() => _tapdisks.Probe(pid, minor), cancellationToken).ConfigureAwait(false);
        }
        catch (ControlException e)
        {
            // As in the reference, no tapdisk means connect waits. Unlike it, every later event retries (the
            // tapdisk may have been slow to start), but only a new path is worth a warning.
            string message = $"{device.Name}: no tapdisk {pid} minor {minor}: {e.Message} (errno {e.Errno})";
            if (changed)
            {
                _log.RateLimited(4, device.Name, message);
            }
            else
            {
                _log.Debug(message);
            }

            return;
        }

        if (disk.SectorSize == 0 || disk.SectorSize % 512 != 0 || disk.Sectors == 0)
        {
            _log.Warning($"{device.Name}: tapdisk {pid} minor {minor} reports {disk.Sectors} sectors of {disk.SectorSize} bytes");
        }

        device.Tapdisk = disk;
        _log.Info($"{device.Name}: served by tapdisk {pid} minor {minor}, {disk.Sectors} sectors of {disk.SectorSize} bytes");
        await PublishGeometryAsync(device, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Acts on the frontend's state (control-xen.md Part II 5.5 step 4).</summary>
    private async Task FollowFrontendAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        string frontendPath = device.FrontendPath!;
        string? text = await _xenStore.TryReadAsync(frontendPath + "/state", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (text is null)
        {
            // Only a frontend that existed can vanish. The reference also reads "not yet written" as "gone", and
            // it deletes the backend directory. We only drop the ring: libxl removes the frontend first and then
            // runs block-tap remove, which reads pid and minor from the backend directory we would have deleted.
            if (device.FrontendSeen)
            {
                _log.Info($"{device.Name}: frontend {frontendPath} removed; dropping the ring");
                Disconnect(device);
            }

            return;
        }

        device.FrontendSeen = true;
        if (!StrictNumber.TryParseInt32(text, out int value) || value > (int)XenbusState.Reconfigured)
        {
            _log.RateLimited(4, device.Name, $"{device.Name}: frontend state '{text}' is not a xenbus state; ignored");
            return;
        }

        var state = (XenbusState)value;
        XenbusState? backendState = await ReadBackendStateAsync(device, cancellationToken).ConfigureAwait(false);
        switch (state)
        {
            case XenbusState.Unknown:
                break;
            case XenbusState.Initialising when !device.Online:
                break;
            case XenbusState.Initialising:
                // Deliberate difference: a frontend back at Initialising (reboot, kexec) gets its old ring dropped
                // now; the reference keeps it and then takes tapdisk's EALREADY for the new ring as success.
                if (device.Connected && !Disconnect(device))
                {
                    break;
                }

                await SetStateAsync(device, backendState, XenbusState.InitWait, cancellationToken).ConfigureAwait(false);
                break;
            case XenbusState.Initialised or XenbusState.Connected:
                if (!device.Online || backendState is XenbusState.Closing or XenbusState.Closed)
                {
                    // The toolstack is detaching (libxl writes online=0 and backend state 5): never step back to
                    // Connected over it; the frontend closes next.
                    _log.Debug($"{device.Name}: backend is being closed (online {(device.Online ? 1 : 0)}, state {backendState}); not connecting");
                }
                else if (!device.Connected || backendState != XenbusState.Connected)
                {
                    await ConnectAsync(device, backendState, cancellationToken).ConfigureAwait(false);
                }

                break;
            case XenbusState.Closing:
                await SetStateAsync(device, backendState, XenbusState.Closing, cancellationToken).ConfigureAwait(false);
                break;
            case XenbusState.Closed:
                if (Disconnect(device))
                {
                    await SetStateAsync(device, backendState, XenbusState.Closed, cancellationToken).ConfigureAwait(false);
                }

                break;
            default:
                _log.Debug($"{device.Name}: frontend in state {state}; nothing to do");
                break;
        }
    }

    private async Task ConnectAsync(VbdDevice device, XenbusState? backendState, CancellationToken cancellationToken)
    {
        if (device.Tapdisk is not { } disk)
        {
            _log.Debug($"{device.Name}: frontend is ready but no tapdisk is known yet; waiting");
            return;
        }

        if (device.ConfigurationFault is { } fault)
        {
            _log.RateLimited(4, device.Name, $"{device.Name}: {fault}; not connecting");
            return;
        }

        (FrontendRing? ring, string? ringFault) = await FrontendRing.ReadAsync(_xenStore, device.FrontendPath!, Math.Min(_options.MaxRingPageOrder, FrontendRing.MaxOrder), cancellationToken).ConfigureAwait(false);
        if (ring is null)
        {
            _log.RateLimited(4, device.Name, $"{device.Name}: frontend {device.FrontendPath}: {ringFault}; not connecting");
            return;
        }

        if (!device.Connected)
        {
            try
            {
                await Task.Run(() => _tapdisks.Connect(disk, device.FrontendDomain, device.DeviceId, ring, device.PollDuration, device.PollIdleThreshold), cancellationToken).ConfigureAwait(false);
            }
            catch (ControlException e)
            {
                _log.RateLimited(3, device.Name, $"{device.Name}: tapdisk {disk.Pid} minor {disk.Minor} did not connect the ring: {e.Message} (errno {e.Errno})");
                return;
            }

            device.Connected = true;
            _log.Info($"{device.Name}: ring connected (order {ring.Order}, event channel {ring.EventChannel}, protocol {ring.ProtocolName ?? "native"})");
        }

        try
        {
            await PublishGeometryAsync(device, cancellationToken).ConfigureAwait(false);
            await SetStateAsync(device, backendState, XenbusState.Connected, cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException)
        {
            // The frontend was never told: do not leave tapdisk holding a ring nobody will use.
            Disconnect(device);
            throw;
        }
    }

    /// <summary>XENBLKIF_DISCONNECT if a ring is up; false (and logged) if tapdisk refused, so the caller keeps its state.</summary>
    private bool Disconnect(VbdDevice device)
    {
        if (!device.Connected || device.Tapdisk is not { } disk)
        {
            device.Connected = false;
            return true;
        }

        try
        {
            _tapdisks.Disconnect(disk, device.FrontendDomain, device.DeviceId);
        }
        catch (ControlException e)
        {
            _log.Error($"{device.Name}: tapdisk {disk.Pid} minor {disk.Minor} did not disconnect the ring: {e.Message} (errno {e.Errno})");
            return false;
        }

        device.Connected = false;
        _log.Info($"{device.Name}: ring disconnected");
        return true;
    }

    private async Task RemoveDeviceAsync(VbdDevice device, string reason, CancellationToken cancellationToken)
    {
        // Unlike the reference, a refused DISCONNECT does not keep the record: the directory is gone, so nothing
        // would ever retry it; the error is logged instead.
        Disconnect(device);
        _devices.Remove((device.FrontendDomain, device.DeviceId));
        if (device.FrontendPath is { } frontend)
        {
            _byFrontendState.Remove(frontend + "/state");
            await _xenStore.UnwatchAsync(frontend + "/state", FrontendToken, cancellationToken).ConfigureAwait(false);
        }

        _log.Info($"{device.Name}: removed ({reason})");
    }

    /// <summary>@releaseDomain: a frontend domain that is gone gets its rings dropped (control-xen.md Part II 5.5).</summary>
    private async Task OnDomainReleasedAsync(CancellationToken cancellationToken)
    {
        foreach (VbdDevice device in _devices.Values.ToArray())
        {
            if (!device.Connected || device.FrontendDomain == _backendDomain)
            {
                continue;
            }

            if (!await _xenStore.IsDomainIntroducedAsync(device.FrontendDomain, cancellationToken).ConfigureAwait(false))
            {
                _log.Info($"{device.Name}: frontend domain {device.FrontendDomain} is gone");
                Disconnect(device);
            }
        }
    }

    private async Task<XenbusState?> ReadBackendStateAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        string? text = await _xenStore.TryReadAsync(device.BackendPath + "/state", cancellationToken: cancellationToken).ConfigureAwait(false);
        return StrictNumber.TryParseInt32(text, out int value) && value <= (int)XenbusState.Reconfigured ? (XenbusState)value : null;
    }

    private async Task SetStateAsync(VbdDevice device, XenbusState? current, XenbusState state, CancellationToken cancellationToken)
    {
        if (current == state)
        {
            return;
        }

        // Inside a transaction that first checks the device is still there, so a write racing the toolstack's
        // removal cannot recreate a stray directory.
        bool written = await _xenStore.TransactionAsync(
            async transaction =>
            {
                if (await _xenStore.TryReadAsync(device.BackendPath + "/frontend", transaction, cancellationToken).ConfigureAwait(false) is null)
                {
                    return false;
                }

                await _xenStore.WriteAsync(device.BackendPath + "/state", StrictNumber.Format((ulong)state), transaction, cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken).ConfigureAwait(false);
        if (written)
        {
            _log.Debug($"{device.Name}: backend state {current?.ToString() ?? "?"} -> {state}");
        }
    }

    /// <summary>The keys blkfront reads at InitWait, written once when the device appears, readable by the frontend only.</summary>
    private async Task PublishFeaturesAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        var keys = new List<(string Key, string Value)>
        {
            ("max-ring-page-order", StrictNumber.Format(Math.Min(_options.MaxRingPageOrder, FrontendRing.MaxOrder))),
            ("feature-barrier", _options.Barrier ? "1" : "0"),
            ("feature-flush-cache", _options.FlushCache ? "1" : "0"),
        };
        string? discardEnable = await _xenStore.TryReadAsync(device.BackendPath + "/discard-enable", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (_options.DiscardGranularity > 0 && discardEnable != "0")
        {
            keys.Add(("feature-discard", "1"));
            keys.Add(("discard-granularity", StrictNumber.Format(_options.DiscardGranularity)));
            keys.Add(("discard-alignment", "0"));
            keys.Add(("discard-secure", "0"));
        }

        if (_options.MaxIndirectSegments > 0)
        {
            keys.Add(("feature-max-indirect-segments", StrictNumber.Format(Math.Min(_options.MaxIndirectSegments, TapbackOptions.TapdiskMaxIndirectSegments))));
        }

        await WriteFrontendReadableAsync(device, keys, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>kthread-pid, sectors, sector-size, physical-sector-size (the logical size unless configured) and info from DISK_INFO.</summary>
    private async Task PublishGeometryAsync(VbdDevice device, CancellationToken cancellationToken)
    {
        TapdiskDisk disk = device.Tapdisk!;
        uint info = disk.Info | (device.CdRom ? VdiskCdrom : 0) | (device.ReadOnly ? VdiskReadonly : 0);
        var keys = new List<(string Key, string Value)>
        {
            ("feature-barrier", _options.Barrier ? "1" : "0"),
            ("sector-size", StrictNumber.Format(disk.SectorSize)),
            ("sectors", StrictNumber.Format(disk.Sectors)),
            ("info", StrictNumber.Format(info)),
        };
        keys.Add(("physical-sector-size", StrictNumber.Format(_options.PhysicalSectorSize > 0 ? _options.PhysicalSectorSize : disk.SectorSize)));

        await WriteFrontendReadableAsync(device, keys, cancellationToken, ("kthread-pid", StrictNumber.Format((ulong)disk.Pid))).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes keys in one transaction (redone on EAGAIN), each owned by us and readable by the frontend (n&lt;B&gt;,
    /// r&lt;F&gt;), plus an optional key that keeps the directory's permissions; nothing if the device is gone.
    /// </summary>
    private async Task WriteFrontendReadableAsync(VbdDevice device, List<(string Key, string Value)> keys, CancellationToken cancellationToken, (string Key, string Value)? inherited = null)
    {
        XenStorePermission[] permissions = [new(XenStoreAccess.None, _backendDomain), new(XenStoreAccess.Read, device.FrontendDomain)];
        await _xenStore.TransactionAsync(
            async transaction =>
            {
                if (await _xenStore.TryReadAsync(device.BackendPath + "/frontend", transaction, cancellationToken).ConfigureAwait(false) is null)
                {
                    return;
                }

                foreach ((string key, string value) in keys)
                {
                    string path = device.BackendPath + "/" + key;
                    if (await _xenStore.TryReadAsync(path, transaction, cancellationToken).ConfigureAwait(false) == value)
                    {
                        continue;
                    }

                    await _xenStore.WriteAsync(path, value, transaction, cancellationToken).ConfigureAwait(false);
                    await _xenStore.SetPermissionsAsync(path, permissions, transaction, cancellationToken).ConfigureAwait(false);
                }

                if (inherited is { } extra)
                {
                    await _xenStore.WriteAsync(device.BackendPath + "/" + extra.Key, extra.Value, transaction, cancellationToken).ConfigureAwait(false);
                }
            },
            cancellationToken).ConfigureAwait(false);
    }
}
