using System.Diagnostics;
using Tapdisk.Testing;

namespace Tapdisk.TapCtl.Tests;

/// <summary>Runs the built tap-ctl as a real process with BLKTAP_CONTROL_DIR pointing at a test directory.</summary>
public static class TapCtlProcess
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(2);

    /// <summary>The tap-ctl built alongside these tests (same configuration), else the AOT one in artifacts/bin.</summary>
    public static string Executable
    {
        get
        {
            string root = ExternalTool.RepoRoot;
            string config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
            string[] candidates =
            [
                Environment.GetEnvironmentVariable("TAPCTL_EXE") ?? string.Empty,
                Path.Combine(root, "artifacts", "build", "bin", "Tapdisk.TapCtl", config, "tap-ctl"),
                Path.Combine(root, "artifacts", "bin", "tap-ctl"),
            ];
            return candidates.FirstOrDefault(c => c.Length > 0 && File.Exists(c))
                ?? throw new InvalidOperationException("tap-ctl is not built: looked for " + string.Join(", ", candidates.Where(c => c.Length > 0)));
        }
    }

    public static TapCtlResult Run(string controlDir, params string[] args) => Run(controlDir, args, stdin: null, environment: null);

    public static TapCtlResult Run(string controlDir, string[] args, byte[]? stdin, IDictionary<string, string>? environment)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["BLKTAP_CONTROL_DIR"] = controlDir;
        psi.Environment.Remove("TAPDISK_EXEC");
        foreach (KeyValuePair<string, string> kv in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[kv.Key] = kv.Value;
        }

        return Start(psi, stdin);
    }

    /// <summary>Runs tap-ctl under script(1) so that its stdout is a terminal.</summary>
    public static TapCtlResult RunOnTty(string controlDir, params string[] args) => RunOnTty(controlDir, args, null);

    /// <summary>Runs tap-ctl under script(1), with extra environment variables.</summary>
    public static TapCtlResult RunOnTty(string controlDir, string[] args, IDictionary<string, string>? environment)
    {
        var psi = new ProcessStartInfo(ExternalTool.Require("script"))
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add("-qec");
        psi.ArgumentList.Add(Executable + " " + string.Join(' ', args));
        psi.ArgumentList.Add("/dev/null");
        psi.Environment["BLKTAP_CONTROL_DIR"] = controlDir;
        foreach (KeyValuePair<string, string> kv in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[kv.Key] = kv.Value;
        }

        TapCtlResult r = Start(psi, null);
        return r with { StandardOutput = r.StandardOutput.Replace("\r\n", "\n", StringComparison.Ordinal) };
    }

    private static TapCtlResult Start(ProcessStartInfo psi, byte[]? stdin)
    {
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + psi.FileName);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        try
        {
            if (stdin is not null)
            {
                p.StandardInput.BaseStream.Write(stdin);
            }

            p.StandardInput.Close();
        }
        catch (IOException)
        {
            // tap-ctl did not read its stdin: that is its business.
        }

        if (!p.WaitForExit(s_hangGuard))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"tap-ctl {string.Join(' ', psi.ArgumentList)} hung");
        }

        return new TapCtlResult(p.ExitCode, stdout.Result, stderr.Result);
    }
}

public sealed record TapCtlResult(int ExitCode, string StandardOutput, string StandardError)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{StandardOutput}--- stderr ---\n{StandardError}";
}
