using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>tap-ctl stats against the real tapdisk: the in-flight count under load, and counters that outlive a pause.</summary>
public sealed class StatsTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    [Fact]
    public void Stats_UnderLoad_ShowRequestsInFlight_AndCountersSurvivePauseUnpause()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        (int pid, string p, string m, string nbd) = Create(CreateVhd("disk.vhd", 64));

        string source = Scratch.File("source.raw");
        byte[] data = new byte[64 * Mib];
        new Random(5).NextBytes(data);
        File.WriteAllBytes(source, data);

        // nbdcopy keeps many 256 KiB writes in flight; stats is asked until it sees some (copies repeat until then,
        // bounded by the hang guard): the count is the backend's gate, NBD and ring requests alike.
        long seen = 0;
        var deadline = Stopwatch.StartNew();
        while (seen == 0)
        {
            Assert.True(deadline.Elapsed < HangGuard, "no request was ever seen in flight");
            Process copy = StartHelper(nbdcopy, "--requests=64", source, NbdUri(nbd));
            while (!copy.HasExited && seen == 0)
            {
                using JsonDocument doc = JsonDocument.Parse(TapCtlOk("stats", "-p", p, "-m", m));
                long outstanding = doc.RootElement.GetProperty("reqs_outstanding").GetInt64();
                Assert.InRange(outstanding, 0, 4096);
                seen = outstanding;
            }

            Assert.True(copy.WaitForExit(HangGuard), "nbdcopy hung");
            Assert.Equal(0, copy.ExitCode);
        }

        // Idle again: nothing in flight; the writes are counted in secs and on the leaf.
        (long readSecs, long writeSecs) = Secs(p, m);
        Assert.True(writeSecs >= 64L * Mib / 512, $"secs written {writeSecs}");
        using (JsonDocument doc = JsonDocument.Parse(TapCtlOk("stats", "-p", p, "-m", m)))
        {
            Assert.Equal(0, doc.RootElement.GetProperty("reqs_outstanding").GetInt64());
            Assert.Equal(writeSecs, doc.RootElement.GetProperty("images")[0].GetProperty("hits")[1].GetInt64());
        }

        // The counters belong to the VBD: a pause (chain closed) and an unpause (chain reopened) keep them.
        TapCtlOk("pause", "-p", p, "-m", m);
        Assert.Equal((readSecs, writeSecs), Secs(p, m));
        TapCtlOk("unpause", "-p", p, "-m", m);
        Assert.Equal((readSecs, writeSecs), Secs(p, m));
        QemuIo(nbd, "read 0 1M");
        (long readAfter, long writeAfter) = Secs(p, m);
        Assert.True(readAfter >= readSecs + (Mib / 512), $"secs read {readAfter} after reading 1 MiB from {readSecs}");
        Assert.Equal(writeSecs, writeAfter);
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    [Fact]
    public void Stats_ReadOfUnallocatedSectors_CountsInSecs()
    {
        // Served as OFFSET_HOLE chunks without touching the disk, they are still sectors the client read (blktap's secs).
        (int pid, string p, string m, string nbd) = Create(CreateVhd("empty.vhd", 16));
        QemuIo(nbd, "read -P 0 0 1M");
        (long readSecs, long writeSecs) = Secs(p, m);
        Assert.True(readSecs >= Mib / 512, $"secs read {readSecs} after reading 1 MiB of holes");
        Assert.Equal(0, writeSecs);
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>tap-ctl create on <paramref name="file"/>: the tapdisk's pid (tracked for teardown), pid and minor as tap-ctl takes them, the NBD socket.</summary>
    private (int Pid, string P, string M, string Nbd) Create(string file)
    {
        TapCtlOk("create", "-a", "vhd:" + file);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        return (pid, row["pid"], row["minor"], NbdSocket(pid, int.Parse(row["minor"], CultureInfo.InvariantCulture)));
    }

    private (long Read, long Write) Secs(string pid, string minor)
    {
        using JsonDocument doc = JsonDocument.Parse(TapCtlOk("stats", "-p", pid, "-m", minor));
        JsonElement secs = doc.RootElement.GetProperty("secs");
        return (secs[0].GetInt64(), secs[1].GetInt64());
    }
}
