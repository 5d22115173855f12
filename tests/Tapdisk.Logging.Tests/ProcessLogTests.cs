using Xunit;

namespace Tapdisk.Logging.Tests;

/// <summary>The stderr side of the daemons' log (syslog off: /dev/log may not exist here).</summary>
public sealed class ProcessLogTests : IDisposable
{
    private readonly StringWriter _stderr = new();

    private static string Prefix => $"tapdisk[{Environment.ProcessId}]: ";

    private string[] Lines => _stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    public void Dispose() => _stderr.Dispose();

    [Fact]
    public void Write_EveryLevel_OneLinePrefixedWithIdentAndPid()
    {
        using var log = new ProcessLog("tapdisk", maxPerWindow: 20, syslog: false, stderr: _stderr);
        log.Info("i");
        log.Warning("w");
        log.Error("e");
        Assert.Equal([Prefix + "i", Prefix + "w", Prefix + "e"], Lines);
    }

    [Fact]
    public void Debug_OnlyWhenVerbose()
    {
        using var log = new ProcessLog("tapdisk", maxPerWindow: 20, syslog: false, stderr: _stderr);
        log.Debug("hidden");
        log.Verbose = true;
        log.Debug("shown");
        Assert.Equal([Prefix + "shown"], Lines);
    }

    [Fact]
    public void RateLimited_MoreThanMaxPerWindowForOneKey_DropsTheRestOfThatKeyOnly()
    {
        using var log = new ProcessLog("tapdisk", maxPerWindow: 2, syslog: false, stderr: _stderr);
        for (int i = 0; i < 5; i++)
        {
            log.RateLimited(3, "minor 1", $"a{i}");
        }

        log.RateLimited(3, "minor 2", "b0");
        log.Error("unlimited");
        Assert.Equal([Prefix + "a0", Prefix + "a1", Prefix + "b0", Prefix + "unlimited"], Lines);
    }

    [Fact]
    public void DetachStderr_StopsWritingToIt()
    {
        using var log = new ProcessLog("tapback", maxPerWindow: 10, syslog: false, stderr: _stderr);
        log.Info("before");
        log.DetachStderr();
        log.Error("after");
        Assert.Equal([$"tapback[{Environment.ProcessId}]: before"], Lines);
    }

    [Fact]
    public void Write_StderrFails_StopsUsingItWithoutThrowing()
    {
        using var failing = new FailingWriter();
        using var log = new ProcessLog("tapdisk", maxPerWindow: 20, syslog: false, stderr: failing);
        log.Error("first");
        log.Error("second");
        Assert.Equal(1, failing.Attempts);
    }

    private sealed class FailingWriter : StringWriter
    {
        public int Attempts { get; private set; }

        public override void WriteLine(string? value)
        {
            Attempts++;
            throw new IOException("EPIPE");
        }
    }
}
