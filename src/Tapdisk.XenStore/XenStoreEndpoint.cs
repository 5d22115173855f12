namespace Tapdisk.XenStore;

/// <summary>
/// Where xenstored is reached: its UNIX socket (a dom0 running the daemon), or the xenbus character device, which
/// carries the same messages through the kernel's shared-page ring (driver domains, stub-domain xenstored).
/// </summary>
public sealed record XenStoreEndpoint(string Path, bool IsDevice)
{
    /// <summary>Debian's <c>XEN_RUN_STORED/socket</c>.</summary>
    public const string DefaultSocketPath = "/var/run/xenstored/socket";

    /// <summary>The same socket where <c>/var/run</c> is not a link to <c>/run</c>.</summary>
    public const string RunSocketPath = "/run/xenstored/socket";

    public const string XenbusDevicePath = "/dev/xen/xenbus";

    /// <summary>libxenstore's environment override for the socket path.</summary>
    public const string PathVariable = "XENSTORED_PATH";

    public static XenStoreEndpoint Socket(string path) => new(path, IsDevice: false);

    public static XenStoreEndpoint Device(string path) => new(path, IsDevice: true);

    /// <summary>
    /// The order libxenstore's <c>xs_open(0)</c> tries (control-xen.md Part II 5.2): <c>XENSTORED_PATH</c>, the two
    /// socket spellings, then the xenbus device.
    /// </summary>
    public static IReadOnlyList<XenStoreEndpoint> DefaultCandidates()
    {
        var candidates = new List<XenStoreEndpoint>(4);
        if (Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } overridden)
        {
            candidates.Add(overridden.StartsWith("/dev/", StringComparison.Ordinal) ? Device(overridden) : Socket(overridden));
        }

        candidates.Add(Socket(DefaultSocketPath));
        candidates.Add(Socket(RunSocketPath));
        candidates.Add(Device(XenbusDevicePath));
        return candidates;
    }

    public override string ToString() => IsDevice ? $"device {Path}" : $"socket {Path}";
}
