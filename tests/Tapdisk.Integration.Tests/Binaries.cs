using Tapdisk.Testing;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// The executables under test: the NativeAOT ones in artifacts/bin (after .ci/publish) if present, else the build
/// output of the configuration these tests were built in (the test project references the three exe projects).
/// </summary>
public static class Binaries
{
    public static string Tapdisk => Locate("Tapdisk.Daemon", "tapdisk");

    public static string TapCtl => Locate("Tapdisk.TapCtl", "tap-ctl");

    public static string VhdUtil => Locate("Tapdisk.VhdUtil", "vhd-util");

    /// <summary>The libxl hotplug script, from the source tree (it is the file that ships).</summary>
    public static string BlockTap => Path.Combine(ExternalTool.RepoRoot, "src", "Tapdisk.Daemon", "hotplug", "block-tap");

    private static string Locate(string project, string name)
    {
        string root = ExternalTool.RepoRoot;

        // artifacts/build/bin/<project>/<config>/: the tests' own output directory is named after the configuration.
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
