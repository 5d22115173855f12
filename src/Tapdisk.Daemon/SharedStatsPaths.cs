using System.Globalization;

namespace Tapdisk.Daemon;

/// <summary>
/// Where tapdisk publishes its statistics pages (control-xen.md 1). The root is /dev/shm; TAPDISK_SHM_DIR overrides it,
/// a deliberate addition (like BLKTAP_CONTROL_DIR) so tests can watch pages appear and go without sharing /dev/shm.
/// </summary>
internal static class SharedStatsPaths
{
    public const string DefaultRoot = "/dev/shm";

    public static string Root => Environment.GetEnvironmentVariable("TAPDISK_SHM_DIR") is { Length: > 0 } dir ? dir : DefaultRoot;

    /// <summary>td3-&lt;pid&gt;: the process's directory, removed with everything in it at exit.</summary>
    public static string ProcessDirectory(int pid) => Path.Combine(Root, "td3-" + pid.ToString(CultureInfo.InvariantCulture));

    public static string Vdi(int pid, int minor) => Path.Combine(ProcessDirectory(pid), "vdi-" + minor.ToString(CultureInfo.InvariantCulture));

    public static string Nbd(int pid, int minor) => Path.Combine(ProcessDirectory(pid), "nbd-" + minor.ToString(CultureInfo.InvariantCulture));

    public static string NbdOld(int pid, int minor) => Path.Combine(ProcessDirectory(pid), "nbd-old-" + minor.ToString(CultureInfo.InvariantCulture));

    public static string Vbd(int pid, uint domid, uint devid) => Path.Combine(ProcessDirectory(pid), string.Create(CultureInfo.InvariantCulture, $"vbd-{domid}-{devid}"));

    public static string MetricsDirectory => Path.Combine(Root, "metrics");

    /// <summary>The legacy RRD page, metrics/tap-&lt;pid&gt;-&lt;minor&gt;: one page that blktap creates and leaves zero.</summary>
    public static string Tap(int pid, int minor) => Path.Combine(MetricsDirectory, string.Create(CultureInfo.InvariantCulture, $"tap-{pid}-{minor}"));

    /// <summary>vbd3-&lt;domid&gt;-&lt;devid&gt;: one ring's directory (statistics, io_ring).</summary>
    public static string RingDirectory(uint domid, uint devid) => Path.Combine(Root, string.Create(CultureInfo.InvariantCulture, $"vbd3-{domid}-{devid}"));
}
