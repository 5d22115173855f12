using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// The read caches through the real binaries: lc (tap-ctl -r) over a vhd-util snapshot, read back with nbdcopy and
/// compared by sha256 with the chain served without it, and the shared parent cache of two VBDs in one tapdisk.
/// </summary>
public sealed class ReadCacheTests : IntegrationTest
{
    private static readonly string[] s_parentWrites =
    [
        "write -P 0x11 0 4M", "write -P 0x22 6M 3M", "write -P 0x33 20M 64k", "write -P 0x44 33M 5M", "write -P 0x55 60M 4M",
    ];

    [Fact]
    public void LocalCache_ReadsBackIdentical_AndTheLeafThenHoldsWhatWasFetched()
    {
        string leaf = Chain(Scratch.File("leaf.vhd"));
        string reference = CopyOut("vhd:" + leaf, [], "reference.raw");

        (string pid, string minor) = CreateVbd("vhd:" + leaf, "-r");
        using (JsonDocument stats = Stats(pid, minor))
        {
            JsonElement images = stats.RootElement.GetProperty("images");
            Assert.Equal("lc", images[0].GetProperty("driver").GetProperty("name").GetString());
            Assert.Equal(11, images[0].GetProperty("driver").GetProperty("type").GetInt32());
            Assert.Equal(leaf, images[1].GetProperty("name").GetString());
        }

        string cached = Scratch.File("cached.raw");
        NbdCopy(Nbd(pid, minor), cached);
        Assert.Equal(DiskContent.Sha256(reference), DiskContent.Sha256(cached));

        // Write-back is not guest I/O: the VBD counted only the reads.
        using (JsonDocument stats = Stats(pid, minor))
        {
            Assert.Equal(0, stats.RootElement.GetProperty("secs")[1].GetInt64());
        }

        // Closing waits for the write-backs still running.
        TapCtlOk("destroy", "-p", pid, "-m", minor);
        Assert.Contains("is valid", VhdUtilOk("check", "-n", leaf), StringComparison.Ordinal);

        // Served again without -r: nothing is read from the parent any more (depth 2), and the content is the same.
        (pid, minor) = CreateVbd("vhd:" + leaf);
        ProcessResult map = ExternalTool.Run(ExternalTool.Require("nbdinfo"), ["--map=qemu:allocation-depth", NbdUri(Nbd(pid, minor))], stdin: null, HangGuard).EnsureSuccess("nbdinfo --map");
        string[] runs = map.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.DoesNotContain(runs, r => r.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2] == "2");
        Assert.Contains(runs, r => r.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2] == "1");
        string after = Scratch.File("after.raw");
        NbdCopy(Nbd(pid, minor), after);
        Assert.Equal(DiskContent.Sha256(reference), DiskContent.Sha256(after));
        TapCtlOk("destroy", "-p", pid, "-m", minor);
    }

    [Fact]
    public void LocalCache_LeafFileSystemFills_WriteBackStops_NothingLost()
    {
        Assert.True(System.Environment.UserName == "root", "this test loop-mounts a small file system and needs root (mount -o loop)");
        string image = Scratch.File("small-fs.img");
        string mount = Scratch.File("mnt");
        Directory.CreateDirectory(mount);
        using (FileStream f = File.Create(image))
        {
            f.SetLength(24L * 1024 * 1024);
        }

        ExternalTool.Run(ExternalTool.Require("mkfs.ext4"), ["-q", "-F", image], stdin: null, HangGuard).EnsureSuccess("mkfs.ext4");
        ExternalTool.Run(ExternalTool.Require("mount"), ["-o", "loop", image, mount], stdin: null, HangGuard).EnsureSuccess("mount -o loop");
        try
        {
            string leaf = Chain(Path.Combine(mount, "leaf.vhd"));
            string reference = CopyOut("vhd:" + leaf, [], "reference.raw");

            // Leave about 8 MiB free: far less than the 15 MiB of parent data the reads would write back.
            long free = new DriveInfo(mount).AvailableFreeSpace;
            using (FileStream filler = File.Create(Path.Combine(mount, "filler")))
            {
                byte[] chunk = new byte[1024 * 1024];
                Array.Fill(chunk, (byte)1);
                for (long left = free - (8L * 1024 * 1024); left > 0; left -= chunk.Length)
                {
                    filler.Write(chunk, 0, (int)Math.Min(chunk.Length, left));
                }
            }

            (string pid, string minor) = CreateVbd("vhd:" + leaf, "-r");
            string cached = Scratch.File("cached.raw");
            NbdCopy(Nbd(pid, minor), cached);
            Assert.Equal(DiskContent.Sha256(reference), DiskContent.Sha256(cached));

            // Write-back stopped before the file system ran dry (blktap checks once a second and can overshoot).
            WaitUntil(() => LocalCacheState(pid, minor) != "on", "lc write-back to stop");
            // Write-backs queued before the pause still land (their room was counted): wait for them, not for a clock.
            WaitUntil(() => WrittenBack(pid, minor) > 0, "write-back to write into the leaf");
            Assert.True(new DriveInfo(mount).AvailableFreeSpace > 0, "write-back ran the leaf's file system dry");

            // A second pass still reads the same while write-back is off.
            NbdCopy(Nbd(pid, minor), cached);
            Assert.Equal(DiskContent.Sha256(reference), DiskContent.Sha256(cached));
            TapCtlOk("destroy", "-p", pid, "-m", minor);

            // Nothing lost: the leaf is a valid VHD and the chain reads the same without the cache.
            Assert.Contains("is valid", VhdUtilOk("check", "-n", leaf), StringComparison.Ordinal);
            string after = CopyOut("vhd:" + leaf, [], "after.raw");
            Assert.Equal(DiskContent.Sha256(reference), DiskContent.Sha256(after));
        }
        finally
        {
            ExternalTool.Run(ExternalTool.Require("umount"), ["-l", mount], stdin: null, HangGuard).EnsureSuccess("umount");
        }
    }

    [Fact]
    public void SharedParentCache_TwoVbdsOverOneParent_OneSetOfEntries_SecondOnlyHits()
    {
        Environment["TAPDISK_PARENT_CACHE_MB"] = "64";
        string a = Chain(Scratch.File("a.vhd"), leafData: false);
        string b = Scratch.File("b.vhd");
        VhdUtilOk("snapshot", "-n", b, "-p", Scratch.File("base.vhd"));

        int ma = Allocate(), mb = Allocate();
        int pid = Spawn();
        string p = pid.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", ma.ToString(CultureInfo.InvariantCulture));
        TapCtlOk("attach", "-p", p, "-m", mb.ToString(CultureInfo.InvariantCulture));
        TapCtlOk("open", "-p", p, "-m", ma.ToString(CultureInfo.InvariantCulture), "-a", "vhd:" + a);
        TapCtlOk("open", "-p", p, "-m", mb.ToString(CultureInfo.InvariantCulture), "-a", "vhd:" + b);

        string first = Scratch.File("first.raw");
        NbdCopy(NbdSocket(pid, ma), first);
        long entries;
        using (JsonDocument stats = Stats(p, ma.ToString(CultureInfo.InvariantCulture)))
        {
            JsonElement images = stats.RootElement.GetProperty("images");
            Assert.Equal("bc", images[1].GetProperty("driver").GetProperty("name").GetString());
            Assert.Equal(7, images[1].GetProperty("driver").GetProperty("type").GetInt32());
            JsonElement cache = stats.RootElement.GetProperty("parent_cache");
            entries = cache.GetProperty("entries").GetInt64();
            Assert.True(entries > 0, "no entries after the first VBD read its disk");
            Assert.True(cache.GetProperty("misses").GetInt64() > 0);
            Assert.Equal(2, cache.GetProperty("users").GetInt64());
            Assert.True(cache.GetProperty("compression_ratio_permille").GetInt64() < 600, "pattern data compresses well");
        }

        string second = Scratch.File("second.raw");
        NbdCopy(NbdSocket(pid, mb), second);
        using (JsonDocument stats = Stats(p, mb.ToString(CultureInfo.InvariantCulture)))
        {
            JsonElement cache = stats.RootElement.GetProperty("parent_cache");
            Assert.Equal(entries, cache.GetProperty("entries").GetInt64());
            Assert.True(cache.GetProperty("hits").GetInt64() > 0, "the second VBD had no hits");
            Assert.Equal(0, cache.GetProperty("misses").GetInt64());

            // The parent served nothing to the second VBD: its own read hits stay 0, the cache layer's are not.
            JsonElement images = stats.RootElement.GetProperty("images");
            Assert.Equal(0, images[2].GetProperty("hits")[0].GetInt64());
            Assert.True(images[1].GetProperty("hits")[0].GetInt64() > 0);
        }

        Assert.Equal(DiskContent.Sha256(first), DiskContent.Sha256(second));
        TapCtlOk("close", "-p", p, "-m", ma.ToString(CultureInfo.InvariantCulture));
        TapCtlOk("close", "-p", p, "-m", mb.ToString(CultureInfo.InvariantCulture));
        TapCtlOk("detach", "-p", p, "-m", ma.ToString(CultureInfo.InvariantCulture));
        TapCtlOk("detach", "-p", p, "-m", mb.ToString(CultureInfo.InvariantCulture));
        WaitForExit(pid);
    }

    [Fact]
    public void SharedParentCache_ParentCoalescedIntoWhilePaused_ResumeReadsTheNewParent()
    {
        Environment["TAPDISK_PARENT_CACHE_MB"] = "64";
        string a = Chain(Scratch.File("a.vhd"));
        string b = Scratch.File("b.vhd");
        VhdUtilOk("snapshot", "-n", b, "-p", Scratch.File("base.vhd"));
        (string pid, string minor) = CreateVbd("vhd:" + b);
        string before = Scratch.File("before.raw");
        NbdCopy(Nbd(pid, minor), before);
        NbdCopy(Nbd(pid, minor), before);
        using (JsonDocument stats = Stats(pid, minor))
        {
            Assert.True(stats.RootElement.GetProperty("parent_cache").GetProperty("hits").GetInt64() > 0);
        }

        // Paused, the parent changes under b (a's data coalesced into it), then b resumes.
        TapCtlOk("pause", "-p", pid, "-m", minor);
        VhdUtilOk("coalesce", "-n", a);
        TapCtlOk("unpause", "-p", pid, "-m", minor);

        string after = Scratch.File("after.raw");
        NbdCopy(Nbd(pid, minor), after);
        using (JsonDocument stats = Stats(pid, minor))
        {
            // A new set: the old entries were dropped, and the first pass over the new parent missed.
            JsonElement cache = stats.RootElement.GetProperty("parent_cache");
            Assert.True(cache.GetProperty("set_misses").GetInt64() > 0);
            Assert.Equal(1, cache.GetProperty("users").GetInt64());
        }

        TapCtlOk("destroy", "-p", pid, "-m", minor);
        Environment.Remove("TAPDISK_PARENT_CACHE_MB");
        string fresh = CopyOut("vhd:" + b, [], "fresh.raw");
        Assert.NotEqual(DiskContent.Sha256(before), DiskContent.Sha256(fresh));
        Assert.Equal(DiskContent.Sha256(fresh), DiskContent.Sha256(after));
    }

    [Fact]
    public void AddCacheFlag_InsertsTheBlockCache_AndIsRefusedWhenTheCacheIsOff()
    {
        const uint AddCache = 0x4;
        const int ENOSYS = 38;
        string leaf = Chain(Scratch.File("leaf.vhd"), leafData: false);
        foreach (bool off in new[] { false, true })
        {
            if (off)
            {
                Environment["TAPDISK_PARENT_CACHE_MB"] = "0";
            }

            int minor = Allocate();
            int pid = Spawn();
            string p = pid.ToString(CultureInfo.InvariantCulture), m = minor.ToString(CultureInfo.InvariantCulture);
            TapCtlOk("attach", "-p", p, "-m", m);
            byte[] reply = RawControl.Exchange(ControlSocket(pid), RawControl.OpenMessage((ushort)minor, "vhd:" + leaf, AddCache));
            if (off)
            {
                Assert.Equal(RawControl.Error, RawControl.Type(reply));
                Assert.Equal(ENOSYS, RawControl.Int0(reply));
            }
            else
            {
                Assert.Equal(RawControl.OpenRsp, RawControl.Type(reply));
                using (JsonDocument stats = Stats(p, m))
                {
                    JsonElement images = stats.RootElement.GetProperty("images");
                    Assert.Equal(["vhd", "bc", "vhd"], images.EnumerateArray().Select(i => i.GetProperty("driver").GetProperty("name").GetString()));
                }

                NbdCopy(NbdSocket(pid, minor), Scratch.File("copy.raw"));
                TapCtlOk("close", "-p", p, "-m", m);
            }

            TapCtlOk("detach", "-p", p, "-m", m);
            WaitForExit(pid);
        }
    }

    /// <summary>A 64 MiB base.vhd in the scratch directory with data in several blocks, and a snapshot of it at <paramref name="leaf"/>.</summary>
    private string Chain(string leaf, bool leafData = true)
    {
        string parent = CreateVhd("base.vhd", 64);
        (string pid, string minor) = CreateVbd("vhd:" + parent);
        QemuIo(Nbd(pid, minor), s_parentWrites);
        TapCtlOk("destroy", "-p", pid, "-m", minor);
        VhdUtilOk("snapshot", "-n", leaf, "-p", parent);

        if (!leafData)
        {
            return leaf;
        }

        // Some data of the leaf's own, which must win over the parent's.
        (pid, minor) = CreateVbd("vhd:" + leaf);
        QemuIo(Nbd(pid, minor), "write -P 0x66 1M 512k", "write -P 0x77 34M 4k");
        TapCtlOk("destroy", "-p", pid, "-m", minor);
        return leaf;
    }

    private string CopyOut(string parameters, string[] flags, string name)
    {
        (string pid, string minor) = CreateVbd(parameters, flags);
        string file = Scratch.File(name);
        NbdCopy(Nbd(pid, minor), file);
        TapCtlOk("destroy", "-p", pid, "-m", minor);
        return file;
    }

    private static void NbdCopy(string socket, string file) =>
        ExternalTool.Run(ExternalTool.Require("nbdcopy"), [NbdUri(socket), file], stdin: null, HangGuard).EnsureSuccess("nbdcopy " + socket);

    private (string Pid, string Minor) CreateVbd(string parameters, params string[] flags)
    {
        TapCtlOk(["create", "-a", parameters, .. flags]);
        Dictionary<string, string> row = List().Single(r => r.TryGetValue("args", out string? args) && args == parameters);
        TrackTapdisk(int.Parse(row["pid"], CultureInfo.InvariantCulture));
        return (row["pid"], row["minor"]);
    }

    private string? LocalCacheState(string pid, string minor)
    {
        using JsonDocument stats = Stats(pid, minor);
        return stats.RootElement.GetProperty("local_cache").GetProperty("write_back").GetString();
    }

    private long WrittenBack(string pid, string minor)
    {
        using JsonDocument stats = Stats(pid, minor);
        return stats.RootElement.GetProperty("local_cache").GetProperty("written_back_bytes").GetInt64();
    }

    private JsonDocument Stats(string pid, string minor) => JsonDocument.Parse(TapCtlOk("stats", "-p", pid, "-m", minor));

    private string Nbd(string pid, string minor) => NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
}
