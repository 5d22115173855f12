using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// Changed block tracking through the real binaries: tap-ctl create -C / unpause -c, the log filter in tapdisk, logs made
/// and read by our cbt-util, compared byte for byte with the logs blktap's own tapdisk wrote (shared/vectors/blktap-cbt).
/// </summary>
public sealed class CbtTests : IntegrationTest
{
    private const long DiskBytes = 64L * 1024 * 1024;

    /// <summary>blktap's S1/S2 writes (README.txt of the vectors), as qemu-io commands.</summary>
    private static readonly string[] s_mainWrites =
    [
        "write -P 0x11 0 512", "write -P 0x22 247808 4k", "write -P 0x33 655360 64k", "write -P 0x44 1343488 128k",
        "write -P 0x55 33554432 1M", "write -P 0x66 67108352 512",
    ];

    [Fact]
    public void CreateWithLog_BlktapWrites_LogMatchesBlktapByteForByte()
    {
        string image = RawImage("r.img");
        string log = CbtCreate("r.cbtlog", DiskBytes);
        TapCtlOk("create", "-a", "aio:" + image, "-C", log);
        (string pid, string minor) = Single();

        using (JsonDocument stats = Stats(pid, minor))
        {
            JsonElement images = stats.RootElement.GetProperty("images");
            Assert.Equal(2, images.GetArrayLength());
            Assert.Equal(log, images[0].GetProperty("name").GetString());
            Assert.Equal(9, images[0].GetProperty("driver").GetProperty("type").GetInt32());
            Assert.Equal("log", images[0].GetProperty("driver").GetProperty("name").GetString());
            Assert.Equal(image, images[1].GetProperty("name").GetString());
        }

        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
        QemuIo(nbd, s_mainWrites);
        QemuIo(nbd, "read -P 0x11 0 512", "read -P 0x55 33554432 1M", "read -P 0 5242880 64k");

        // MAP_SHARED: the bits are in the file while tapdisk still runs, as blktap's are.
        byte[] expected = File.ReadAllBytes(VectorLog("r.cbtlog"));
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(File.ReadAllBytes(log)));

        using (JsonDocument stats = Stats(pid, minor))
        {
            JsonElement logLayer = stats.RootElement.GetProperty("images")[0];
            Assert.Equal("[0,0]", logLayer.GetProperty("hits").GetRawText().Replace(" ", string.Empty, StringComparison.Ordinal));
        }

        Assert.DoesNotContain("cbtlog", Assert.Single(List())["args"], StringComparison.Ordinal);
        TapCtlOk("destroy", "-p", pid, "-m", minor);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(File.ReadAllBytes(log)));
        Assert.Equal(Convert.ToHexString(expected.AsSpan(CbtHeaderSize)), HexOfStdout("get", "-n", log, "-b"));
    }

    [Theory]
    [InlineData("1.14", "7.2")]
    [InlineData("1.22", "10")] // extended headers: the bitmap comes back in BLOCK_STATUS_EXT chunks
    public void NbdDirtyBitmap_NbdinfoAndQemuImg_ShowExactlyTheWrittenUnits(string libnbd, string qemu)
    {
        string image = RawImage("m.img");
        string log = CbtCreate("m.cbtlog", DiskBytes);
        TapCtlOk("create", "-a", "aio:" + image, "-C", log);
        (string pid, string minor) = Single();
        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
        QemuIo(nbd, s_mainWrites);

        // Units 0, 3, 10, 20-22, 512-527 and 1023 (blktap's S1 bits), as qemu's dirty-bitmap context: 1 = dirty.
        (long Start, long Length, bool Dirty)[] expected =
        [
            (0, 65536, true), (65536, 131072, false), (196608, 65536, true), (262144, 393216, false), (655360, 65536, true),
            (720896, 589824, false), (1310720, 196608, true), (1507328, 32047104, false), (33554432, 1048576, true),
            (34603008, 32440320, false), (67043328, 65536, true),
        ];
        ProcessResult map = NbdClients.Libnbd(libnbd, "nbdinfo", "--map=qemu:dirty-bitmap:cbt", NbdUri(nbd)).EnsureSuccess("nbdinfo --map");
        string[] lines = map.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(
            expected.Select(e => FormattableString.Invariant($"{e.Start} {e.Length} {(e.Dirty ? 1 : 0)} {(e.Dirty ? "dirty" : "clean")}")),
            lines.Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))));

        // qemu-img map with x-dirty-bitmap reports dirty runs as "data": false (qemu's documented inversion).
        ProcessResult qemuMap = ExternalTool.Run(
            NbdClients.Qemu(qemu, "qemu-img"),
            ["map", "--output=json", "--image-opts", $"driver=nbd,server.type=unix,server.path={nbd},x-dirty-bitmap=qemu:dirty-bitmap:cbt"],
            stdin: null,
            HangGuard).EnsureSuccess("qemu-img map x-dirty-bitmap");
        using JsonDocument doc = JsonDocument.Parse(qemuMap.StandardOutput);
        Assert.Equal(
            expected.Select(e => (e.Start, e.Length, !e.Dirty)),
            doc.RootElement.EnumerateArray().Select(x => (x.GetProperty("start").GetInt64(), x.GetProperty("length").GetInt64(), x.GetProperty("data").GetBoolean())));

        TapCtlOk("destroy", "-p", pid, "-m", minor);
    }

    /// <summary>
    /// The README's incremental backup, end to end: a full copy with nbdcopy, then after random writes (and across a
    /// XAPI-style pause / snapshot / new log / unpause) copies of only the extents the NBD dirty bitmap names; the
    /// backup equals the disk byte for byte each time.
    /// </summary>
    [Fact]
    public void IncrementalBackup_FullThenDirtyExtentsOnly_EqualsTheDisk()
    {
        string disk = CreateVhd("d.vhd", 64);
        string log1 = CbtCreate("d1.cbtlog", DiskBytes);
        TapCtlOk("create", "-a", "vhd:" + disk, "-C", log1);
        (string pid, string minor) = Single();
        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
        var random = new Random(14);
        QemuIo(nbd, RandomWrites(random, 12));

        // Full backup, then a fresh log for the changes after it (tap-ctl pause; cbt-util create; unpause -c).
        string backup = Scratch.File("backup.raw");
        ExternalTool.Run(ExternalTool.Require("nbdcopy"), [NbdUri(nbd), backup], stdin: null, HangGuard).EnsureSuccess("nbdcopy full");
        string log2 = CbtCreate("d2.cbtlog", DiskBytes);
        TapCtlOk("pause", "-p", pid, "-m", minor);
        TapCtlOk("unpause", "-p", pid, "-m", minor, "-c", log2);

        QemuIo(nbd, RandomWrites(random, 12));
        long copied = CopyDirtyExtents(nbd, backup);
        Assert.InRange(copied, 65536, DiskBytes / 2);
        Assert.Equal(CurrentSha256(nbd), DiskContent.Sha256(backup));

        // XAPI's snapshot flow: pause, snapshot the leaf, a new log for the new leaf, unpause onto both.
        string leaf = Scratch.File("leaf.vhd");
        string log3 = CbtCreate("leaf.cbtlog", DiskBytes);
        TapCtlOk("pause", "-p", pid, "-m", minor);
        VhdUtilOk("snapshot", "-n", leaf, "-p", disk);
        TapCtlOk("unpause", "-p", pid, "-m", minor, "-a", "vhd:" + leaf, "-c", log3);

        QemuIo(nbd, RandomWrites(random, 12));
        copied = CopyDirtyExtents(nbd, backup);
        Assert.InRange(copied, 65536, DiskBytes / 2);
        Assert.Equal(CurrentSha256(nbd), DiskContent.Sha256(backup));
        TapCtlOk("destroy", "-p", pid, "-m", minor);
    }

    private static string[] RandomWrites(Random random, int count)
    {
        string[] commands = new string[count];
        for (int i = 0; i < count; i++)
        {
            long offset = random.NextInt64(DiskBytes / 4096) * 4096;
            long length = Math.Min(DiskBytes - offset, (random.Next(32) + 1) * 4096L);
            commands[i] = FormattableString.Invariant($"write -P 0x{random.Next(1, 256):x2} {offset} {length}");
        }

        return commands;
    }

    /// <summary>Reads the runs nbdinfo's map of qemu:dirty-bitmap:cbt calls dirty and writes them into the backup; returns the bytes copied.</summary>
    private static long CopyDirtyExtents(string nbd, string backup)
    {
        ProcessResult map = ExternalTool.Run(ExternalTool.Require("nbdinfo"), ["--map=qemu:dirty-bitmap:cbt", NbdUri(nbd)], stdin: null, HangGuard).EnsureSuccess("nbdinfo --map");
        long copied = 0;
        using var client = RawNbdClient.Connect(nbd);
        using FileStream target = File.OpenWrite(backup);
        foreach (string line in map.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields[2] != "1")
            {
                continue;
            }

            long start = long.Parse(fields[0], CultureInfo.InvariantCulture);
            long length = long.Parse(fields[1], CultureInfo.InvariantCulture);
            for (long at = start; at < start + length; at += 65536)
            {
                int chunk = (int)Math.Min(65536, start + length - at);
                target.Position = at;
                target.Write(client.Read(at, chunk));
                copied += chunk;
            }
        }

        return copied;
    }

    private string CurrentSha256(string nbd)
    {
        string now = Scratch.File("now.raw");
        File.Delete(now);
        ExternalTool.Run(ExternalTool.Require("nbdcopy"), [NbdUri(nbd), now], stdin: null, HangGuard).EnsureSuccess("nbdcopy current");
        return DiskContent.Sha256(now);
    }

    [Fact]
    public void PauseUnpauseC_SwitchesLogs_AsBlktapS3()
    {
        string image = CreateVhd("p.vhd", 64);
        string p1 = CbtCreate("p1.cbtlog", DiskBytes);
        string p2 = CbtCreate("p2.cbtlog", DiskBytes);
        TapCtlOk("create", "-a", "vhd:" + image, "-C", p1);
        (string pid, string minor) = Single();
        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));

        QemuIo(nbd, "write -P 0xa1 1M 64k");                      // A -> p1 (unit 16)
        TapCtlOk("pause", "-p", pid, "-m", minor);
        TapCtlOk("unpause", "-p", pid, "-m", minor, "-c", p2);
        QemuIo(nbd, "write -P 0xb2 2M 64k");                      // B -> p2 (unit 32)
        TapCtlOk("pause", "-p", pid, "-m", minor);
        TapCtlOk("unpause", "-p", pid, "-m", minor);               // no -c: the log is dropped
        using (JsonDocument stats = Stats(pid, minor))
        {
            Assert.Equal(1, stats.RootElement.GetProperty("images").GetArrayLength());
        }

        QemuIo(nbd, "write -P 0xc3 3M 64k");                      // C -> no log
        TapCtlOk("pause", "-p", pid, "-m", minor);

        // E is sent while paused: it waits at the gate and lands in the log attached by the next unpause.
        Process e = StartHelper(ExternalTool.Require("qemu-io"), "-f", "raw", "-c", "write -P 0xe5 5M 64k", NbdUri(nbd));
        TapCtlOk("unpause", "-p", pid, "-m", minor, "-c", p1);
        Assert.True(e.WaitForExit(HangGuard), "qemu-io write E did not finish after unpause");
        Assert.Equal(0, e.ExitCode);
        QemuIo(nbd, "write -P 0xd4 4M 64k");                      // D -> p1 (unit 64)
        TapCtlOk("destroy", "-p", pid, "-m", minor);

        Assert.Equal(Convert.ToHexString(File.ReadAllBytes(VectorLog("p1.cbtlog"))), Convert.ToHexString(File.ReadAllBytes(p1)));
        Assert.Equal(Convert.ToHexString(File.ReadAllBytes(VectorLog("p2.cbtlog"))), Convert.ToHexString(File.ReadAllBytes(p2)));
    }

    [Fact]
    public void CreateWithLogTooShort_RefusedAndLogUntouched()
    {
        // blktap's S6d: a log for 1 MiB on a 64 MiB disk loses bits silently (or spins on SIGBUS); we refuse it.
        string image = RawImage("s.img");
        string log = CbtCreate("s.cbtlog", 1024 * 1024);
        byte[] before = File.ReadAllBytes(log);
        ProcessResult r = TapCtl("create", "-a", "aio:" + image, "-C", log);
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("Invalid argument", r.StandardError, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(log));
        Assert.Empty(List());
    }

    [Fact]
    public void UnpauseWithMissingLog_RefusedVbdStaysPausedAndReadOnly()
    {
        // blktap's S3b/S5a-bis: it answers 0, runs without the log and drops -R. We refuse and keep the flags.
        string image = RawImage("ro.img");
        string log = CbtCreate("ro.cbtlog", DiskBytes);
        TapCtlOk("create", "-R", "-a", "aio:" + image, "-C", log);
        (string pid, string minor) = Single();
        TapCtlOk("pause", "-p", pid, "-m", minor);

        ProcessResult r = TapCtl("unpause", "-p", pid, "-m", minor, "-c", Scratch.File("missing.cbtlog"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("No such file or directory", r.StandardError, StringComparison.Ordinal);
        Assert.NotEqual("0", Assert.Single(List())["state"]);

        TapCtlOk("unpause", "-p", pid, "-m", minor, "-c", log);
        Assert.Equal("0", Assert.Single(List())["state"]);
        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
        using (var client = RawNbdClient.Connect(nbd))
        {
            Assert.Throws<IOException>(() => client.Write(0, new byte[512]));
        }

        TapCtlOk("destroy", "-p", pid, "-m", minor);
        Assert.All(File.ReadAllBytes(log).AsSpan(CbtHeaderSize).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void KillDashNine_UnderWriteLoad_EveryAcknowledgedWriteIsInTheLog()
    {
        const long disk = 256L * 1024 * 1024;
        const int units = (int)(disk / 65536);
        string image = RawImage("k.img", disk);
        string log = CbtCreate("k.cbtlog", disk);
        TapCtlOk("create", "-a", "aio:" + image, "-C", log);
        (string pid, string minor) = Single();
        string nbd = NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));

        // Two clients write 4 KiB at random units (every 8th with FUA, a FLUSH every 16); each records a unit only
        // once its write was acknowledged, and counts its flushes.
        var acknowledged = new HashSet<int>[2];
        var flushedBefore = new HashSet<int>[2];
        int[] flushes = new int[2];
        var writers = new Thread[2];
        for (int w = 0; w < writers.Length; w++)
        {
            int id = w;
            acknowledged[id] = [];
            flushedBefore[id] = [];
            writers[id] = new Thread(() => WriteUntilKilled(nbd, units, new Random(id + 1), acknowledged[id], flushedBefore[id], ref flushes[id])) { IsBackground = true };
            writers[id].Start();
        }

        WaitUntil(() => Volatile.Read(ref flushes[0]) >= 20 && Volatile.Read(ref flushes[1]) >= 20, "both writers to have 20 flushes answered");
        Signal(int.Parse(pid, CultureInfo.InvariantCulture), "KILL");
        foreach (Thread t in writers)
        {
            Assert.True(t.Join(HangGuard), "a writer did not stop after the kill");
        }

        byte[] bitmap = File.ReadAllBytes(log).AsSpan(CbtHeaderSize).ToArray();
        int checkedUnits = 0;
        for (int w = 0; w < writers.Length; w++)
        {
            lock (acknowledged[w])
            {
                Assert.True(flushedBefore[w].IsSubsetOf(acknowledged[w]));
                foreach (int unit in acknowledged[w])
                {
                    Assert.True((bitmap[unit >> 3] & (1 << (unit & 7))) != 0, $"unit {unit} was acknowledged but is not in the log");
                    checkedUnits++;
                }
            }
        }

        Assert.True(checkedUnits >= 40, $"only {checkedUnits} acknowledged units to check");
    }

    private static void WriteUntilKilled(string nbd, int units, Random random, HashSet<int> acknowledged, HashSet<int> flushed, ref int flushes)
    {
        byte[] data = new byte[4096];
        random.NextBytes(data);
        try
        {
            using var client = RawNbdClient.Connect(nbd);
            for (int i = 1; ; i++)
            {
                int unit = random.Next(units);
                client.Write((unit * 65536L) + (random.Next(16) * 4096L), data, fua: i % 8 == 0);
                lock (acknowledged)
                {
                    acknowledged.Add(unit);
                }

                if (i % 16 == 0)
                {
                    client.Flush();
                    lock (acknowledged)
                    {
                        flushed.UnionWith(acknowledged);
                    }

                    Interlocked.Increment(ref flushes);
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            // The tapdisk was killed: the connection is gone, which ends the load.
        }
    }

    private const int CbtHeaderSize = 48;

    private (string Pid, string Minor) Single()
    {
        Dictionary<string, string> row = Assert.Single(List());
        TrackTapdisk(int.Parse(row["pid"], CultureInfo.InvariantCulture));
        return (row["pid"], row["minor"]);
    }

    private JsonDocument Stats(string pid, string minor) => JsonDocument.Parse(TapCtlOk("stats", "-p", pid, "-m", minor));

    private string RawImage(string name, long bytes = DiskBytes)
    {
        string path = Scratch.File(name);
        using (FileStream f = File.Create(path))
        {
            f.SetLength(bytes);
        }

        return path;
    }

    private string CbtCreate(string name, long bytes)
    {
        string path = Scratch.File(name);
        ExternalTool.Run(Binaries.CbtUtil, ["create", "-n", path, "-s", bytes.ToString(CultureInfo.InvariantCulture)], stdin: null, HangGuard).EnsureSuccess("cbt-util create " + name);
        return path;
    }

    private static string HexOfStdout(params string[] args)
    {
        // cbt-util get -b writes raw bytes: read them through od so the test's text capture cannot alter them.
        ProcessResult r = ExternalTool.Run("/bin/sh", ["-c", "\"$0\" \"$@\" | od -An -v -tx1", Binaries.CbtUtil, .. args], stdin: null, HangGuard).EnsureSuccess("cbt-util " + string.Join(' ', args));
        return string.Concat(r.StandardOutput.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries)).ToUpperInvariant();
    }

    private static string VectorLog(string name)
    {
        string beside = Path.GetFullPath(Path.Combine(ExternalTool.RepoRoot, "..", "shared", "vectors", "blktap-cbt", "logs"));
        const string fixedPath = "/work/shared/vectors/blktap-cbt/logs";
        return Path.Combine(Directory.Exists(beside) ? beside : fixedPath, name);
    }
}
