using System.Globalization;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// tapdisk.&lt;pid&gt;.log beside syslog (control-xen.md 1, 4.3): created at start-up, reopened on SIGHUP, deleted at a
/// clean exit unless an error was logged or SIGUSR1 was received. The directory is TAPDISK_LOG_DIR here, not /var/log.
/// </summary>
public sealed class LogFileTests : IntegrationTest
{
    private readonly string _logDir;

    public LogFileTests()
    {
        _logDir = Path.Combine(Root, "log", "blktap");
        Environment["TAPDISK_LOG_DIR"] = _logDir;
    }

    [Fact]
    public void CleanRun_LogReopenedOnSighup_AndRemovedAtExit()
    {
        TapCtlOk("create", "-a", "vhd:" + CreateVhd("disk.vhd", 8));
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        string log = LogPath(pid);
        Assert.True(File.Exists(log), $"{log} missing while tapdisk runs");

        // logrotate: move the file away, SIGHUP, and the daemon writes to a new file at the same path.
        string rotated = log + ".1";
        File.Move(log, rotated);
        Signal(pid, "HUP");
        WaitUntil(() => File.Exists(log), "the log file to be reopened after SIGHUP");
        Assert.Contains("started, control socket", File.ReadAllText(rotated), StringComparison.Ordinal);

        TapCtlOk("destroy", "-p", row["pid"], "-m", row["minor"]);
        WaitForExit(pid);
        Assert.False(File.Exists(log), "a clean run's log must be removed at exit");
        Assert.True(File.Exists(rotated), "the rotated file is logrotate's, not ours");
    }

    [Fact]
    public void ErrorLogged_LogKeptAtExit()
    {
        int pid = Spawn();
        int minor = Allocate();
        string p = pid.ToString(CultureInfo.InvariantCulture), m = minor.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", m);
        Assert.NotEqual(0, TapCtl("open", "-p", p, "-m", m, "-a", "vhd:" + Scratch.File("missing.vhd")).ExitCode);
        TapCtlOk("detach", "-p", p, "-m", m);
        WaitForExit(pid);
        string text = File.ReadAllText(LogPath(pid));
        Assert.Contains("missing.vhd", text, StringComparison.Ordinal);
        Assert.Contains("ERROR", text, StringComparison.Ordinal);
        TapCtlOk("free", "-m", m);
    }

    [Fact]
    public void Sigusr1_DumpsStateAndKeepsLog()
    {
        TapCtlOk("create", "-a", "vhd:" + CreateVhd("disk.vhd", 8));
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        Signal(pid, "USR1");

        // The dump is flushed when the log is marked precious.
        WaitUntil(() => File.ReadAllText(LogPath(pid)).Contains("debug: minor " + row["minor"], StringComparison.Ordinal), "the SIGUSR1 dump");
        TapCtlOk("destroy", "-p", row["pid"], "-m", row["minor"]);
        WaitForExit(pid);
        Assert.True(File.Exists(LogPath(pid)), "SIGUSR1 must keep the log at exit");
    }

    private string LogPath(int pid) => Path.Combine(_logDir, $"tapdisk.{pid}.log");
}
