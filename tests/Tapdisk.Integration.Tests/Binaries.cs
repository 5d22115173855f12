using Tapdisk.Testing;

namespace Tapdisk.Integration.Tests;

/// <summary>The executables under test (found as <see cref="ExternalTool.RepoExecutable"/> says: the AOT ones when published).</summary>
public static class Binaries
{
    public static string Tapdisk => ExternalTool.RepoExecutable("Tapdisk.Daemon", "tapdisk");

    public static string TapCtl => ExternalTool.RepoExecutable("Tapdisk.TapCtl", "tap-ctl");

    public static string VhdUtil => ExternalTool.RepoExecutable("Tapdisk.VhdUtil", "vhd-util");

    public static string CbtUtil => ExternalTool.RepoExecutable("Tapdisk.CbtUtil", "cbt-util");

    /// <summary>The libxl hotplug script, from the source tree (it is the file that ships).</summary>
    public static string BlockTap => Path.Combine(ExternalTool.RepoRoot, "src", "Tapdisk.Daemon", "hotplug", "block-tap");
}
