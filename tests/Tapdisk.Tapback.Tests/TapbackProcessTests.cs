using System.Diagnostics;
using Tapdisk.Control;
using Tapdisk.Testing;
using Tapdisk.XenStore;
using Xunit;

namespace Tapdisk.Tapback.Tests;

/// <summary>The real executables: tapback as a process (foreground and daemonised), and a real tapdisk made by tap-ctl.</summary>
public sealed class TapbackProcessTests
{
    private const uint Fe = 7;
    private const uint Dev = 51712;

    [Fact]
    public async Task TapbackExecutable_HandshakeThenSigtermExitsZero()
    {
        await using TapbackHarness h = await TapbackHarness.StartProcessAsync("-b", "--max-indirect-segments", "32");
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Equal("0", h.BackendKey(Fe, Dev, "feature-barrier"));
        Assert.Equal("32", h.BackendKey(Fe, Dev, "feature-max-indirect-segments"));
        h.FrontendPublishesRing(Fe, Dev, ringRef: 30, eventChannel: 31);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
        TapdiskMessage connect = Assert.Single(h.Fake.Connects);
        Assert.Equal((30u, 31u, Fe), (connect.GetBlkifGref(0), connect.BlkifPort, connect.BlkifDomid));

        ExternalTool.Run("kill", "-TERM", $"{h.Process!.Id}").EnsureSuccess("kill -TERM");
        await h.Process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.Equal(0, h.Process.ExitCode);
        Assert.Contains("signal received", h.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TapbackExecutable_Daemonises_WritesPidfile_ServesDetached()
    {
        using var dir = new TempDirectory();
        using var store = new TestXenStored(dir.File("xs.sock"));
        string pidFile = dir.File("tapback.pid");
        ProcessResult started = ExternalTool.Run(
            TestBinaries.Tapback,
            ["-p", pidFile, "--control-dir", dir.Path],
            stdin: null,
            timeout: TimeSpan.FromMinutes(1),
            environment: new Dictionary<string, string> { [XenStoreEndpoint.PathVariable] = store.SocketPath });
        Assert.Equal(0, started.ExitCode);
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            using Process daemon = Process.GetProcessById(pid);
            Assert.False(daemon.HasExited);

            // It serves: a new device gets its features written.
            store.WriteAll("/local/domain/0/backend/vbd3/3/768", ("frontend", "/local/domain/3/device/vbd/768"), ("state", "1"));
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (store.Read("/local/domain/0/backend/vbd3/3/768/max-ring-page-order") is null)
            {
                await Task.Delay(20, cts.Token);
            }

            ExternalTool.Run("kill", "-TERM", $"{pid}").EnsureSuccess("kill -TERM");
            await daemon.WaitForExitAsync(cts.Token);
            Assert.False(File.Exists(pidFile));
        }
        finally
        {
            ExternalTool.Run("kill", "-KILL", $"{pid}");
        }
    }

    [Fact]
    public void TapbackExecutable_NoXenstored_FailsWithReason()
    {
        using var dir = new TempDirectory();
        ProcessResult result = ExternalTool.Run(
            TestBinaries.Tapback,
            ["-d"],
            stdin: null,
            timeout: TimeSpan.FromMinutes(1),
            environment: new Dictionary<string, string> { [XenStoreEndpoint.PathVariable] = dir.File("absent.sock") });
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("cannot connect to xenstored", result.StandardError, StringComparison.Ordinal);
        Assert.Contains("absent.sock", result.StandardError, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-x")]
    [InlineData("-x", "12a")]
    [InlineData("--max-ring-page-order", "4")]
    [InlineData("--max-indirect-segments", "257")]
    [InlineData("-z")]
    public void TapbackExecutable_BadUsage_IsEinval(params string[] args)
    {
        ProcessResult result = ExternalTool.Run(TestBinaries.Tapback, args);
        Assert.Equal(22, result.ExitCode);
        Assert.Contains("usage: tapback", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RealTapdisk_GeometryFromDiskInfo_RingRefusedWithoutXen()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync(realTapdisk: true);
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Equal($"{h.Pid}", h.BackendKey(Fe, Dev, "kthread-pid"));
        Assert.Equal($"{(8 << 20) / 512}", h.BackendKey(Fe, Dev, "sectors"));
        Assert.Equal("512", h.BackendKey(Fe, Dev, "sector-size"));

        // No /dev/xen here: the real tapdisk cannot map the ring and says so; the device stays at InitWait.
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains("did not connect the ring", StringComparison.Ordinal), "tapdisk's refusal");
        await h.Settle();
        Assert.Equal("2", h.BackendKey(Fe, Dev, "state"));

        // The frontend closing is still followed; nothing was connected, so nothing is disconnected.
        h.FrontendState(Fe, Dev, 6);
        await h.WaitBackendState(Fe, Dev, 6);
    }
}
