using Tapdisk.Testing;

namespace Tapdisk.Tapback.Tests;

/// <summary>The executables these tests run as processes (found as <see cref="ExternalTool.RepoExecutable"/> says).</summary>
internal static class TestBinaries
{
    public static string Tapback => ExternalTool.RepoExecutable("Tapdisk.Tapback", "tapback");

    public static string Tapdisk => ExternalTool.RepoExecutable("Tapdisk.Daemon", "tapdisk");

    public static string TapCtl => ExternalTool.RepoExecutable("Tapdisk.TapCtl", "tap-ctl");
}
