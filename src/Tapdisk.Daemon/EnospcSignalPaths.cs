using System.Globalization;

namespace Tapdisk.Daemon;

/// <summary>
/// blktap's ENOSPC signal file, /run/tapdisk-enospc&lt;minor&gt; (control-xen.md 1): created when the leaf runs out of
/// space with a secondary configured. TAPDISK_ENOSPC_DIR moves /run, a deliberate addition (like TAPDISK_SHM_DIR) so
/// tests and unprivileged runs need not write to /run.
/// </summary>
internal static class EnospcSignalPaths
{
    public const string DefaultRoot = "/run";

    public static string Root => Environment.GetEnvironmentVariable("TAPDISK_ENOSPC_DIR") is { Length: > 0 } dir ? dir : DefaultRoot;

    public static string For(int minor) => Path.Combine(Root, "tapdisk-enospc" + minor.ToString(CultureInfo.InvariantCulture));
}
