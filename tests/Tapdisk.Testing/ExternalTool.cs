using System.Diagnostics;
using System.Text;

namespace Tapdisk.Testing;

/// <summary>Finds and runs peer tools (qemu-img, qemu-io, nbdinfo, nbdcopy) and the repo's own executables.</summary>
public static class ExternalTool
{
    /// <summary>Full path of a program on PATH, or null.</summary>
    public static string? Find(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            string candidate = System.IO.Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>The path of a tool that the test cannot do without; fails the test (never skips silently) if absent.</summary>
    public static string Require(string name) =>
        Find(name) ?? throw new InvalidOperationException($"required peer tool '{name}' is not installed (CI installs it; see README)");

    /// <summary>The repo root (the directory holding Tapdisk.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            string? dir = AppContext.BaseDirectory;
            while (dir is not null && !File.Exists(System.IO.Path.Combine(dir, "Tapdisk.sln")))
            {
                dir = System.IO.Path.GetDirectoryName(dir);
            }

            return dir ?? throw new InvalidOperationException("cannot find the repository root from " + AppContext.BaseDirectory);
        }
    }

    public static ProcessResult Run(string fileName, params string[] args) => Run(fileName, args, stdin: null, timeout: TimeSpan.FromMinutes(5));

    public static ProcessResult Run(string fileName, IEnumerable<string> args, string? stdin, TimeSpan timeout, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        if (environment is not null)
        {
            foreach (KeyValuePair<string, string> kv in environment)
            {
                psi.Environment[kv.Key] = kv.Value;
            }
        }

        using Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + fileName);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.Append(e.Data).Append('\n'); } } };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.Append(e.Data).Append('\n'); } } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }

        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {string.Join(' ', args)} did not finish within {timeout}");
        }

        p.WaitForExit();
        return new ProcessResult(p.ExitCode, stdout.ToString(), stderr.ToString());
    }
}

public sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
{
    public ProcessResult EnsureSuccess(string what)
    {
        return ExitCode == 0 ? this : throw new InvalidOperationException($"{what} failed with exit code {ExitCode}:\n{StandardOutput}\n{StandardError}");
    }
}
