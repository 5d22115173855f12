using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// Per test: a short control root (/tmp/tdi-XXXXXX, as UNIX socket paths must stay under 108 bytes) that tap-ctl and
/// tapdisk use through BLKTAP_CONTROL_DIR, a scratch directory for images, and a teardown that kills every tapdisk the
/// test left running (by pid) and every helper process it started.
/// </summary>
public abstract class IntegrationTest : IDisposable
{
    protected static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(2);

    private readonly List<Process> _helpers = [];
    private readonly HashSet<int> _tapdisks = [];

    protected IntegrationTest()
    {
        Root = Path.Combine("/tmp", "tdi-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(Root);
        Environment = new Dictionary<string, string>
        {
            ["BLKTAP_CONTROL_DIR"] = Root,
            ["TAPDISK_EXEC"] = Binaries.Tapdisk,

            // A tapdisk that is killed leaves its statistics pages and log behind, as blktap's does: keep them in
            // this test's root (removed at teardown), never in the machine's /dev/shm and /var/log/blktap.
            ["TAPDISK_SHM_DIR"] = Path.Combine(Root, "shm"),
            ["TAPDISK_LOG_DIR"] = Path.Combine(Root, "log"),
        };
        Directory.CreateDirectory(Path.Combine(Root, "shm"));
    }

    /// <summary>The control root: ctl&lt;pid&gt;, nbd&lt;pid&gt;.&lt;minor&gt;, tapdisk/tapdisk-&lt;minor&gt;.</summary>
    protected string Root { get; }

    /// <summary>Where images live (disk-backed /var/tmp, so O_DIRECT works).</summary>
    protected TempDirectory Scratch { get; } = new();

    /// <summary>The environment every tap-ctl and tapdisk of this test runs with.</summary>
    protected Dictionary<string, string> Environment { get; }

    protected string ControlSocket(int pid) => Path.Combine(Root, "ctl" + pid.ToString(CultureInfo.InvariantCulture));

    protected string NbdSocket(int pid, int minor) => Path.Combine(Root, FormattableString.Invariant($"nbd{pid}.{minor}"));

    protected string OldNbdSocket(int pid, int minor) => Path.Combine(Root, FormattableString.Invariant($"nbd-old{pid}.{minor}"));

    protected string Marker(int minor) => Path.Combine(Root, "tapdisk", "tapdisk-" + minor.ToString(CultureInfo.InvariantCulture));

    protected static string NbdUri(string socket) => "nbd+unix:///?socket=" + socket;

    // ---- tap-ctl and vhd-util ----

    protected ProcessResult TapCtl(params string[] args)
    {
        ProcessResult r = ExternalTool.Run(Binaries.TapCtl, args, stdin: null, HangGuard, Environment);
        RememberTapdisks();
        return r;
    }

    protected string TapCtlOk(params string[] args)
    {
        ProcessResult r = TapCtl(args);
        Assert.True(r.ExitCode == 0, $"tap-ctl {string.Join(' ', args)} exited {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
        return r.StandardOutput;
    }

    /// <summary>tap-ctl spawn: the new tapdisk's pid.</summary>
    protected int Spawn()
    {
        int pid = int.Parse(TapCtlOk("spawn").Trim(), CultureInfo.InvariantCulture);
        _tapdisks.Add(pid);
        return pid;
    }

    /// <summary>tap-ctl allocate: the new minor.</summary>
    protected int Allocate()
    {
        string marker = TapCtlOk("allocate").Trim();
        string prefix = Path.Combine(Root, "tapdisk", "tapdisk-");
        Assert.StartsWith(prefix, marker, StringComparison.Ordinal);
        return int.Parse(marker[prefix.Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>The rows of tap-ctl list as key=value maps (args is the rest of the line).</summary>
    protected List<Dictionary<string, string>> List(params string[] args)
    {
        var rows = new List<Dictionary<string, string>>();
        foreach (string line in TapCtlOk(["list", .. args]).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var row = new Dictionary<string, string>();
            string rest = line;
            int argsAt = line.IndexOf("args=", StringComparison.Ordinal);
            if (argsAt >= 0)
            {
                row["args"] = line[(argsAt + 5)..];
                rest = line[..argsAt];
            }

            foreach (string token in rest.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = token.IndexOf('=', StringComparison.Ordinal);
                row[token[..eq]] = token[(eq + 1)..];
            }

            rows.Add(row);
        }

        return rows;
    }

    protected static ProcessResult VhdUtil(params string[] args) => ExternalTool.Run(Binaries.VhdUtil, args, stdin: null, HangGuard);

    protected static string VhdUtilOk(params string[] args) => VhdUtil(args).EnsureSuccess("vhd-util " + string.Join(' ', args)).StandardOutput;

    /// <summary>A new dynamic VHD of <paramref name="megabytes"/> MiB in the scratch directory.</summary>
    protected string CreateVhd(string name, int megabytes)
    {
        string file = Scratch.File(name);
        VhdUtilOk("create", "-n", file, "-s", megabytes.ToString(CultureInfo.InvariantCulture));
        return file;
    }

    // ---- NBD peers ----

    /// <summary>Runs qemu-io commands against an NBD socket; fails on a non-zero exit or any failure in the output.</summary>
    protected static string QemuIo(string socket, params string[] commands) => QemuIo(socket, readOnly: false, commands);

    /// <summary>qemu-io on a read-only export (-r: qemu refuses to open those read-write).</summary>
    protected static string QemuIoReadOnly(string socket, params string[] commands) => QemuIo(socket, readOnly: true, commands);

    private static string QemuIo(string socket, bool readOnly, string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        if (readOnly)
        {
            args.Add("-r");
        }

        foreach (string c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add(NbdUri(socket));
        ProcessResult r = ExternalTool.Run(ExternalTool.Require("qemu-io"), args, stdin: null, HangGuard);
        string all = r.StandardOutput + r.StandardError;
        Assert.True(
            r.ExitCode == 0 && !all.Contains("fail", StringComparison.OrdinalIgnoreCase) && !all.Contains("error", StringComparison.OrdinalIgnoreCase),
            $"qemu-io {string.Join(' ', commands)} on {socket} exited {r.ExitCode}\n{all}");
        return r.StandardOutput;
    }

    /// <summary>nbdinfo --json on the socket: the export size in bytes.</summary>
    protected static long NbdExportSize(string socket)
    {
        ProcessResult r = ExternalTool.Run(ExternalTool.Require("nbdinfo"), ["--json", NbdUri(socket)], stdin: null, HangGuard)
            .EnsureSuccess("nbdinfo " + socket);
        using JsonDocument doc = JsonDocument.Parse(r.StandardOutput);
        return doc.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64();
    }

    /// <summary>Starts a helper process (killed at teardown if still running).</summary>
    protected Process StartHelper(string fileName, params string[] args)
    {
        var psi = new ProcessStartInfo(fileName)
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

        foreach (KeyValuePair<string, string> kv in Environment)
        {
            psi.Environment[kv.Key] = kv.Value;
        }

        Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + fileName);
        _helpers.Add(p);
        p.StandardInput.Close();
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        return p;
    }

    /// <summary>
    /// "tapdisk serve" of an image on a fresh socket in the control root, for reading results back after the VBD is
    /// gone. Dispose sends SIGTERM and waits for the server to exit.
    /// </summary>
    protected Served Serve(string parameters, bool readOnly = true)
    {
        string socket = Path.Combine(Root, "serve" + _helpers.Count.ToString(CultureInfo.InvariantCulture) + ".sock");
        Process p = readOnly
            ? StartHelper(Binaries.Tapdisk, "serve", "-s", socket, "-R", parameters)
            : StartHelper(Binaries.Tapdisk, "serve", "-s", socket, parameters);
        WaitUntil(() => File.Exists(socket) || p.HasExited, "tapdisk serve to listen on " + socket);
        if (p.HasExited)
        {
            Assert.Fail($"tapdisk serve {parameters} exited {p.ExitCode}");
        }

        return new Served(p, socket);
    }

    public sealed class Served(Process process, string socket) : IDisposable
    {
        public string Socket { get; } = socket;

        public int ProcessId => process.Id;

        public void Dispose()
        {
            if (!process.HasExited)
            {
                Signal(process.Id, "TERM");
                if (!process.WaitForExit(HangGuard))
                {
                    process.Kill();
                }
            }
        }
    }

    // ---- processes ----

    /// <summary>Sends a signal by pid (kill(1): the tests carry no P/Invoke).</summary>
    protected static void Signal(int pid, string signal) =>
        ExternalTool.Run(ExternalTool.Require("kill"), ["-" + signal, pid.ToString(CultureInfo.InvariantCulture)], stdin: null, HangGuard)
            .EnsureSuccess($"kill -{signal} {pid}");

    /// <summary>True while the process exists and is not a zombie (a detached tapdisk is not our child to reap).</summary>
    protected static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText("/proc/" + pid.ToString(CultureInfo.InvariantCulture) + "/stat");
            char state = stat[(stat.LastIndexOf(')') + 2)..][0];
            return state is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    protected static void WaitForExit(int pid) => WaitUntil(() => !IsRunning(pid), $"process {pid} to exit");

    /// <summary>Polls a condition; the timeout is only a hang guard.</summary>
    protected static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > HangGuard)
            {
                Assert.Fail("timed out waiting for " + what);
            }

            Thread.Sleep(20);
        }
    }

    private void RememberTapdisks()
    {
        if (!Directory.Exists(Root))
        {
            return;
        }

        foreach (string ctl in Directory.EnumerateFiles(Root, "ctl*"))
        {
            if (int.TryParse(Path.GetFileName(ctl)[3..], NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                _tapdisks.Add(pid);
            }
        }
    }

    protected void TrackTapdisk(int pid) => _tapdisks.Add(pid);

    public void Dispose()
    {
        RememberTapdisks();
        foreach (int pid in _tapdisks)
        {
            if (IsRunning(pid) && IsTapdisk(pid))
            {
                try
                {
                    Process.GetProcessById(pid).Kill();
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // Already gone.
                }
            }
        }

        foreach (Process p in _helpers)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit(HangGuard);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            p.Dispose();
        }

        Scratch.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // Teardown only.
        }

        GC.SuppressFinalize(this);
    }

    private static bool IsTapdisk(int pid)
    {
        try
        {
            return File.ReadAllText("/proc/" + pid.ToString(CultureInfo.InvariantCulture) + "/cmdline").Contains("tapdisk", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }
}
