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

    /// <summary>
    /// One of the repo's executables: the NativeAOT one in artifacts/bin (after .ci/publish) if present, else the build
    /// output of the configuration the calling tests were built in (test projects reference the exe projects for build
    /// order). <paramref name="preferBuild"/> reverses the order, for tests meant to check the build they came with.
    /// </summary>
    public static string RepoExecutable(string project, string name, bool preferBuild = false)
    {
        string root = RepoRoot;

        // artifacts/build/bin/<project>/<config>/: the tests' own output directory is named after the configuration.
        string config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
        string published = System.IO.Path.Combine(root, "artifacts", "bin", name);
        string built = System.IO.Path.Combine(root, "artifacts", "build", "bin", project, config, name);
        string first = preferBuild ? built : published;
        string second = preferBuild ? published : built;
        return File.Exists(first) ? first
            : File.Exists(second) ? second
            : throw new InvalidOperationException($"{name} is not built: neither {published} (bash .ci/publish) nor {built} (dotnet build) exists");
    }

    public static ProcessResult Run(string fileName, params string[] args) => Run(fileName, args, stdin: null, timeout: TimeSpan.FromMinutes(5));

    /// <summary>Runs a program to completion; <paramref name="stdin"/>, if any, goes to it as UTF-8.</summary>
    public static ProcessResult Run(string fileName, IEnumerable<string> args, string? stdin, TimeSpan timeout, IDictionary<string, string>? environment = null) =>
        Run(StartInfo(fileName, args, environment), stdin is null ? null : Encoding.UTF8.GetBytes(stdin), timeout);

    /// <summary>What <see cref="Run(ProcessStartInfo, byte[], TimeSpan)"/> needs to start a program; callers may adjust it (working directory, removed variables) first.</summary>
    public static ProcessStartInfo StartInfo(string fileName, IEnumerable<string> args, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(fileName) { UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (KeyValuePair<string, string> kv in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[kv.Key] = kv.Value;
        }

        return psi;
    }

    /// <summary>
    /// Runs a program to completion: <paramref name="stdin"/> (or nothing) then end of file on its stdin, stdout and
    /// stderr captured exactly as written. The timeout is a hang guard: the process tree is killed and the test fails.
    /// </summary>
    public static ProcessResult Run(ProcessStartInfo psi, byte[]? stdin, TimeSpan timeout)
    {
        psi.RedirectStandardInput = true;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
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
            // The program exited or closed its stdin without reading it all: that is its business.
        }

        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{psi.FileName} {string.Join(' ', psi.ArgumentList)} did not finish within {timeout}");
        }

        p.WaitForExit();
        return new ProcessResult(p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}

public sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{StandardOutput}--- stderr ---\n{StandardError}";

    public ProcessResult EnsureSuccess(string what)
    {
        return ExitCode == 0 ? this : throw new InvalidOperationException($"{what} failed with exit code {ExitCode}:\n{StandardOutput}\n{StandardError}");
    }
}
