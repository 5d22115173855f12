namespace Tapdisk.Tapback;

/// <summary>
/// What tapback knows about one backend device, <c>backend/vbd3/&lt;frontend domid&gt;/&lt;devid&gt;</c>. Everything
/// here can be rebuilt from XenStore plus tapdisk's answers, so a restarted tapback (or one that lost xenstored)
/// recovers by re-reading.
/// </summary>
internal sealed class VbdDevice(uint frontendDomain, uint deviceId, string backendPath)
{
    public uint FrontendDomain { get; } = frontendDomain;

    public uint DeviceId { get; } = deviceId;

    public string BackendPath { get; } = backendPath;

    /// <summary>"vbd3 &lt;domid&gt;/&lt;devid&gt;" for log lines and rate-limit keys.</summary>
    public string Name { get; } = $"vbd3 {frontendDomain}/{deviceId}";

    /// <summary>The backend's <c>frontend</c> key, whose <c>state</c> node is watched.</summary>
    public string? FrontendPath { get; set; }

    /// <summary>The frontend's state node existed at least once; only then does its absence mean the frontend left.</summary>
    public bool FrontendSeen { get; set; }

    /// <summary>The <c>physical-device-path</c> the current <see cref="Tapdisk"/> was found from.</summary>
    public string? PhysicalDevicePath { get; set; }

    public TapdiskDisk? Tapdisk { get; set; }

    /// <summary>tapdisk holds a ring for this device (CONNECT succeeded or said EALREADY, and no DISCONNECT since).</summary>
    public bool Connected { get; set; }

    /// <summary>The backend's <c>online</c> key is not "0": libxl sets 0 when it detaches the device.</summary>
    public bool Online { get; set; } = true;

    public bool ReadOnly { get; set; }

    public bool CdRom { get; set; }

    public uint PollDuration { get; set; }

    public uint PollIdleThreshold { get; set; }

    /// <summary>Why the toolstack's keys for this device cannot be served (bad mode or device-type); null when fine.</summary>
    public string? ConfigurationFault { get; set; }
}
