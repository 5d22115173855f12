using System.Diagnostics;
using Tapdisk.Testing;

namespace Tapdisk.TapCtl.Tests;

/// <summary>Runs the built tap-ctl as a real process with BLKTAP_CONTROL_DIR pointing at a test directory.</summary>
public static class TapCtlProcess
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(2);

    /// <summary>TAPCTL_EXE if set, else the tap-ctl built alongside these tests (same configuration), else the AOT one in artifacts/bin.</summary>
    public static string Executable =>
        Environment.GetEnvironmentVariable("TAPCTL_EXE") is { Length: > 0 } exe && File.Exists(exe)
            ? exe
            : ExternalTool.RepoExecutable("Tapdisk.TapCtl", "tap-ctl", preferBuild: true);

    public static ProcessResult Run(string controlDir, params string[] args) => Run(controlDir, args, stdin: null, environment: null);

    public static ProcessResult Run(string controlDir, string[] args, byte[]? stdin, IDictionary<string, string>? environment)
    {
        ProcessStartInfo psi = ExternalTool.StartInfo(Executable, args, WithControlDir(controlDir, environment));
        if (environment?.ContainsKey("TAPDISK_EXEC") != true)
        {
            // tap-ctl must find the tapdisk beside it, not one the test runner's environment names.
            psi.Environment.Remove("TAPDISK_EXEC");
        }

        return ExternalTool.Run(psi, stdin, s_hangGuard);
    }

    /// <summary>Runs tap-ctl under script(1) so that its stdout is a terminal.</summary>
    public static ProcessResult RunOnTty(string controlDir, params string[] args) => RunOnTty(controlDir, args, null);

    /// <summary>Runs tap-ctl under script(1), with extra environment variables.</summary>
    public static ProcessResult RunOnTty(string controlDir, string[] args, IDictionary<string, string>? environment)
    {
        ProcessStartInfo psi = ExternalTool.StartInfo(
            ExternalTool.Require("script"),
            ["-qec", Executable + " " + string.Join(' ', args), "/dev/null"],
            WithControlDir(controlDir, environment));
        ProcessResult r = ExternalTool.Run(psi, stdin: null, s_hangGuard);
        return r with { StandardOutput = r.StandardOutput.Replace("\r\n", "\n", StringComparison.Ordinal) };
    }

    private static Dictionary<string, string> WithControlDir(string controlDir, IDictionary<string, string>? environment)
    {
        var all = new Dictionary<string, string>(StringComparer.Ordinal) { ["BLKTAP_CONTROL_DIR"] = controlDir };
        foreach (KeyValuePair<string, string> kv in environment ?? new Dictionary<string, string>())
        {
            all[kv.Key] = kv.Value;
        }

        return all;
    }
}
