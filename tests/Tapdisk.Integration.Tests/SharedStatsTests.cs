using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// The statistics pages a real tapdisk publishes (control-xen.md 1): read from the files, as xcp-rrdd and xentop read
/// them, while a real NBD client does I/O; created and removed at OPEN, PAUSE, RESUME, CLOSE and exit.
/// </summary>
public sealed class SharedStatsTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    // struct stats offsets (control-xen.md 1).
    private const int ReadSubmitted = 16, ReadCompleted = 24, ReadSectors = 32, WriteSubmitted = 48, WriteCompleted = 56, WriteSectors = 64, WriteTicks = 72;

    private readonly string _shm;

    public SharedStatsTests()
    {
        _shm = Path.Combine(Root, "shm");
        Directory.CreateDirectory(_shm);
        Environment["TAPDISK_SHM_DIR"] = _shm;
    }

    [Fact]
    public void Pages_LiveDuringNbdIo_AndFollowOpenPauseResumeClose()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        TapCtlOk("create", "-a", "vhd:" + CreateVhd("disk.vhd", 64));
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        int minor = int.Parse(row["minor"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        string p = row["pid"], m = row["minor"];
        string td3 = Path.Combine(_shm, $"td3-{pid}");
        string vdi = Path.Combine(td3, $"vdi-{minor}"), nbdPage = Path.Combine(td3, $"nbd-{minor}"), nbdOldPage = Path.Combine(td3, $"nbd-old-{minor}");
        string tap = Path.Combine(_shm, "metrics", $"tap-{pid}-{minor}");
        foreach (string page in new[] { vdi, nbdPage, nbdOldPage, tap })
        {
            Assert.Equal(4096, new FileInfo(page).Length);
        }

        Assert.Equal(0ul, Field(vdi, WriteSectors));

        // While nbdcopy writes 64 MiB, the VDI page is read from the file until it shows writes under way (copies
        // repeat until then, bounded by the hang guard): the counters move while I/O runs, not at close.
        string source = Scratch.File("source.raw");
        byte[] data = new byte[64 * Mib];
        new Random(7).NextBytes(data);
        File.WriteAllBytes(source, data);
        bool seenLive = false;
        var deadline = Stopwatch.StartNew();
        while (!seenLive)
        {
            Assert.True(deadline.Elapsed < HangGuard, "the vdi page never moved while nbdcopy ran");
            Process copy = StartHelper(nbdcopy, "--requests=16", source, NbdUri(NbdSocket(pid, minor)));
            ulong first = Field(vdi, WriteSectors);
            while (!copy.HasExited && !seenLive)
            {
                ulong now = Field(vdi, WriteSectors);
                seenLive = now > first && now < first + (64 * Mib / 512) && !copy.HasExited;
            }

            // With writes under way the legacy RRD page is still all zeros, as blktap's stays: nothing writes it.
            AssertZeroPage(tap);

            Assert.True(copy.WaitForExit(HangGuard), "nbdcopy hung");
            Assert.Equal(0, copy.ExitCode);
        }

        // Idle: the pages agree with tap-ctl stats' secs and with each other.
        long writeSecs;
        using (JsonDocument doc = JsonDocument.Parse(TapCtlOk("stats", "-p", p, "-m", m)))
        {
            writeSecs = doc.RootElement.GetProperty("secs")[1].GetInt64();
        }

        Assert.True(writeSecs >= 64L * Mib / 512);
        Assert.Equal((ulong)writeSecs, Field(vdi, WriteSectors));
        Assert.Equal(Field(vdi, WriteSubmitted), Field(vdi, WriteCompleted));
        Assert.True(Field(vdi, WriteTicks) > 0);

        // nbdcopy used nbd<pid>.<minor>, the "new" server: its page counted the same sectors; the old one saw none.
        Assert.Equal((ulong)writeSecs, Field(nbdPage, WriteSectors));
        Assert.Equal(0ul, Field(nbdOldPage, WriteSectors));

        // A read through nbd-old<pid>.<minor> counts on nbd-old-<minor> (and on the VDI).
        ulong vdiReadBefore = Field(vdi, ReadSectors);
        QemuIo(OldNbdSocket(pid, minor), "read 0 1M");
        Assert.Equal((ulong)(Mib / 512), Field(nbdOldPage, ReadSectors));
        Assert.Equal(Field(nbdOldPage, ReadSubmitted), Field(nbdOldPage, ReadCompleted));
        Assert.True(Field(vdi, ReadSectors) >= vdiReadBefore + (Mib / 512));

        // PAUSE removes the VDI's pages (the NBD servers stay); RESUME publishes fresh ones.
        TapCtlOk("pause", "-p", p, "-m", m);
        Assert.False(File.Exists(vdi));
        Assert.False(File.Exists(tap));
        Assert.True(File.Exists(nbdPage));
        TapCtlOk("unpause", "-p", p, "-m", m);
        Assert.True(File.Exists(vdi));
        Assert.True(File.Exists(tap));
        Assert.Equal(0ul, Field(vdi, WriteSectors));
        QemuIo(NbdSocket(pid, minor), "write 0 64k");
        Assert.Equal((ulong)(64 * 1024 / 512), Field(vdi, WriteSectors));
        AssertZeroPage(tap);

        // CLOSE removes every page of the VBD; the process's exit removes td3-<pid>.
        TapCtlOk("close", "-p", p, "-m", m);
        Assert.False(File.Exists(vdi));
        Assert.False(File.Exists(nbdPage));
        Assert.False(File.Exists(nbdOldPage));
        Assert.False(File.Exists(tap));
        Assert.True(Directory.Exists(td3));
        TapCtlOk("detach", "-p", p, "-m", m);
        WaitForExit(pid);
        Assert.False(Directory.Exists(td3));
        TapCtlOk("free", "-m", m);
    }

    /// <summary>A whole page of zeros, read from the file as another process would.</summary>
    private static void AssertZeroPage(string page)
    {
        byte[] bytes = File.ReadAllBytes(page);
        Assert.Equal(4096, bytes.Length);
        Assert.Equal(-1, bytes.AsSpan().IndexOfAnyExcept((byte)0));
    }

    /// <summary>One u64 of a page, read from the file as another process would.</summary>
    private static ulong Field(string page, int offset)
    {
        byte[] bytes = File.ReadAllBytes(page);
        Assert.Equal(4096, bytes.Length);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(offset));
    }
}
