using Tapdisk.Testing;

namespace Tapdisk.Tapback.Tests;

/// <summary>
/// The executables these tests run as processes: the NativeAOT ones in artifacts/bin (after .ci/publish) if present,
/// else the build output of this configuration (the test project references the exe projects for build order).
/// </summary>
internal static class TestBinaries
{
    public static string Tapback => Locate("Tapdisk.Tapback", "tapback");

    public static string Tapdisk => Locate("Tapdisk.Daemon", "tapdisk");

    public static string TapCtl => Locate("Tapdisk.TapCtl", "tap-ctl");

    private static string Locate(string project, string name)
    {
        string root = ExternalTool.RepoRoot;
        string config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
        string published = Path.Combine(root, "artifacts", "bin", name);
        string built = Path.Combine(root, "artifacts", "build", "bin", project, config, name);
        if (File.Exists(published))
        {
            return published;
        }

        if (File.Exists(built))
        {
            return built;
        }

        throw new InvalidOperationException($"{name} is not built: neither {published} (bash .ci/publish) nor {built} (dotnet build) exists");
    }
}
