using System.Globalization;

namespace Tapdisk.Control;

/// <summary>
/// blktap's runtime paths (control-xen.md 1). The root is /run/blktap-control; BLKTAP_CONTROL_DIR overrides it, a
/// deliberate addition so tests and side-by-side installs can run without touching the system's tapdisks.
/// </summary>
public static class ControlPaths
{
    public const string DefaultRoot = "/run/blktap-control";

    public static string Root => Environment.GetEnvironmentVariable("BLKTAP_CONTROL_DIR") is { Length: > 0 } dir ? dir : DefaultRoot;

    public static string MinorDirectory => Path.Combine(Root, "tapdisk");

    public static string ControlSocket(int pid) => Path.Combine(Root, "ctl" + pid.ToString(CultureInfo.InvariantCulture));

    public static string MinorMarker(int minor) => Path.Combine(MinorDirectory, "tapdisk-" + minor.ToString(CultureInfo.InvariantCulture));

    public static string NbdSocket(int pid, int minor) => Path.Combine(Root, string.Create(CultureInfo.InvariantCulture, $"nbd{pid}.{minor}"));

    public static string NbdOldSocket(int pid, int minor) => Path.Combine(Root, string.Create(CultureInfo.InvariantCulture, $"nbd-old{pid}.{minor}"));

    public static string NbdServerSocket(int pid, int minor) => Path.Combine(Root, string.Create(CultureInfo.InvariantCulture, $"nbdserver{pid}.{minor}"));

    public static string NbdServerNewSocket(int pid, int minor) => Path.Combine(Root, string.Create(CultureInfo.InvariantCulture, $"nbdserver-new{pid}.{minor}"));

    /// <summary>The per-process fd receiver for the nbd disk type (control-xen.md 1).</summary>
    public static string NbdClientSocket(int pid) => Path.Combine(Root, "nbdclient" + pid.ToString(CultureInfo.InvariantCulture));

    /// <summary>Parses "ctl&lt;pid&gt;" file names.</summary>
    public static bool TryParseControlSocket(string fileName, out int pid)
    {
        pid = 0;
        return fileName.StartsWith("ctl", StringComparison.Ordinal) && int.TryParse(fileName.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out pid);
    }

    /// <summary>Parses "tapdisk-&lt;minor&gt;" file names.</summary>
    public static bool TryParseMinorMarker(string fileName, out int minor)
    {
        minor = 0;
        return fileName.StartsWith("tapdisk-", StringComparison.Ordinal) && int.TryParse(fileName.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out minor);
    }
}
