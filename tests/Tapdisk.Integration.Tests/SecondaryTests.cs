using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// Secondary images with the real tapdisk and tap-ctl (-2, -s; data-plane.md 2.7): storage migration's mirror from
/// unpause -2 to unpause -2 null, a secondary that fails mid-mirror, one of the wrong size, and standby's switch when
/// the primary's file system is full. Full file systems are real: a small tmpfs (mounting needs root).
/// </summary>
public sealed class SecondaryTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    public SecondaryTests()
    {
        Environment["TAPDISK_ENOSPC_DIR"] = Root;
    }

    /// <summary>
    /// The SXM shape: a VBD with content, paused and resumed with -2 (an empty image of the same size), the content
    /// copied to the secondary while the guest keeps writing, more writes (and zeroes and discards) after the copy, a
    /// plain pause and unpause (the secondary stays, as in blktap), then unpause -2 null: the two are byte-identical,
    /// and later writes no longer reach the secondary. The copy takes the part written before the mirror started, as
    /// SXM copies a snapshot: a copy of a range the guest is writing at the same time could put back older data.
    /// </summary>
    [Fact]
    public void Mirror_StorageMigrationFlow_PrimaryAndSecondaryEndByteIdentical()
    {
        string primary = SparseFile("primary.raw", 32 * Mib);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary);
        QemuIo(nbd, "write -P 0x11 0 8M", "write -P 0x12 12M 1M");

        string secondary = SparseFile("secondary.raw", 32 * Mib);
        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m, "-2", "aio:" + secondary);
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
            JsonElement images = stats.RootElement.GetProperty("images");
            Assert.Equal(2, images.GetArrayLength());
            Assert.Equal(secondary, images[1].GetProperty("name").GetString());
        }

        CopyFirstHalfWhileTheGuestWrites(nbd, FormattableString.Invariant($"file.driver=file,file.filename={secondary}"));

        QemuIo(nbd, "write -P 0x33 1M 64k", "write -P 0x34 20M 128k", "write -z 3M 64k", "discard 5M 64k");
        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m);
        QemuIo(nbd, "write -P 0x35 7M 4k", "write -P 0x36 30M 1M");

        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m, "-2", "null");
        Assert.Equal(Sha256(primary), Sha256(secondary));
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(1, stats.RootElement.GetProperty("images").GetArrayLength());
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
        }

        string before = Sha256(secondary);
        QemuIo(nbd, "write -P 0x55 0 64k");
        Assert.Equal(before, Sha256(secondary));
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>
    /// The secondary's file system fills up mid-mirror (real ENOSPC from a 1 MiB tmpfs): the writer sees no error, the
    /// primary has every write, stats say nbd_mirror_failed 1, the secondary is closed, and a later unpause does not
    /// quietly reopen it.
    /// </summary>
    [Fact]
    public void Mirror_SecondaryFailsMidMirror_WriterSeesNoErrorAndStatsShowMirrorFailed()
    {
        using var fs = SmallFileSystem.Mount(Scratch.File("fs"), "1m");
        string primary = SparseFile("primary.raw", 16 * Mib);
        string secondary = Path.Combine(fs.Path, "secondary.raw");
        using (FileStream f = File.Create(secondary))
        {
            f.SetLength(16 * Mib);
        }

        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "aio:" + secondary);
        Assert.Equal(2, ImageCount(p, m));
        QemuIo(nbd, "write -P 0x66 0 4M", "write -P 0x67 8M 2M", "flush");
        QemuIo(nbd, "read -P 0x66 0 4M", "read -P 0x67 8M 2M");
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(1, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
            Assert.Equal(1, stats.RootElement.GetProperty("images").GetArrayLength());
        }

        WaitUntil(() => !HoldsOpen(pid, secondary), "tapdisk to close the dropped secondary");
        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m);
        Assert.Equal(1, ImageCount(p, m));
        Assert.False(HoldsOpen(pid, secondary));
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>
    /// Many writes in flight (fio, QD32, random 4 KiB to 64 KiB with random data) through a mirror set up at create:
    /// every one reached both images, so the files end byte-identical.
    /// </summary>
    [Fact]
    public void Mirror_ManyWritesInFlight_BothImagesEndIdentical()
    {
        string fio = ExternalTool.Require("fio");
        string primary = SparseFile("primary.raw", 16 * Mib);
        string secondary = SparseFile("secondary.raw", 16 * Mib);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "aio:" + secondary);
        ExternalTool.Run(fio, ["--name=w", "--ioengine=nbd", "--uri=" + NbdUri(nbd), "--rw=randwrite", "--bsrange=4k-64k",
            "--iodepth=32", "--size=16M", "--io_size=64M", "--refill_buffers", "--randrepeat=0"], stdin: null, HangGuard).EnsureSuccess("fio");
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
        }

        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
        Assert.Equal(Sha256(primary), Sha256(secondary));
    }

    /// <summary>A VHD disk mirrored to an empty VHD from create on: the two read back identical (qemu-img compare).</summary>
    [Fact]
    public void Mirror_VhdSecondaryFromCreate_HoldsEveryChange()
    {
        string primary = CreateVhd("primary.vhd", 16);
        string secondary = CreateVhd("secondary.vhd", 16);
        (int pid, string p, string m, string nbd) = Create("-a", "vhd:" + primary, "-2", "vhd:" + secondary);
        QemuIo(nbd, "write -P 0x81 0 1M", "write -P 0x82 5M 64k", "write -z 64k 4k", "write -P 0x83 15M 1M", "flush");
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);

        ProcessResult compared = ExternalTool.Run(ExternalTool.Require("qemu-img"), ["compare", "-f", "vpc", "-F", "vpc", primary, secondary], stdin: null, HangGuard);
        Assert.True(compared.ExitCode == 0, compared.ToString());
    }

    /// <summary>
    /// Storage migration to another tapdisk over NBD, as SXM does it: the destination is a second tapdisk serving an
    /// empty image; unpause -2 nbd:&lt;its socket&gt;; the first half copied to the destination over NBD while the guest
    /// writes the second half; more writes, zeroes and discards; unpause -2 null; the destination's file is then
    /// byte-identical to the source.
    /// </summary>
    [Fact]
    public void Mirror_ToAnotherTapdiskOverNbd_StorageMigrationFlow_ByteIdentical()
    {
        string destination = SparseFile("destination.raw", 32 * Mib);
        using (Served server = Serve("aio:" + destination, readOnly: false))
        {
            MigrateThroughNbd("nbd:" + server.Socket, FormattableString.Invariant($"file.driver=nbd,file.path={server.Socket}"));
        }

        Assert.Equal(Sha256(Scratch.File("primary.raw")), Sha256(destination));
    }

    /// <summary>The same flow to qemu-nbd over TCP on 127.0.0.1 (blktap's host:port form of an nbd secondary).</summary>
    [Fact]
    public void Mirror_ToQemuNbdOverTcp_StorageMigrationFlow_ByteIdentical()
    {
        string destination = SparseFile("destination.raw", 32 * Mib);
        int port = FreeTcpPort();
        string portText = port.ToString(CultureInfo.InvariantCulture);
        Process qemuNbd = StartHelper(ExternalTool.Require("qemu-nbd"), "-f", "raw", "--cache=none", "--discard=unmap", "-b", "127.0.0.1", "-p", portText, "-t", "-e", "4", destination);
        WaitUntil(() => TcpAccepts(port) || qemuNbd.HasExited, "qemu-nbd to listen on 127.0.0.1:" + portText);
        Assert.False(qemuNbd.HasExited, "qemu-nbd exited");
        MigrateThroughNbd("nbd:127.0.0.1:" + portText, FormattableString.Invariant($"file.driver=nbd,file.host=127.0.0.1,file.port={port}"));
        Signal(qemuNbd.Id, "TERM");
        Assert.True(qemuNbd.WaitForExit(HangGuard), "qemu-nbd did not exit");
        Assert.Equal(Sha256(Scratch.File("primary.raw")), Sha256(destination));
    }

    /// <summary>
    /// The destination dies mid-mirror (kill -9 of the tapdisk serving it): the writer sees no error, the primary has
    /// every write, and stats say nbd_mirror_failed 1 (what xapi reads to fail the migration).
    /// </summary>
    [Fact]
    public void Mirror_DestinationKilledMidMirror_WriterSeesNoErrorAndMirrorFailed()
    {
        string primary = SparseFile("primary.raw", 16 * Mib);
        string destination = SparseFile("destination.raw", 16 * Mib);
        using Served server = Serve("aio:" + destination, readOnly: false);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "nbd:" + server.Socket);
        QemuIo(nbd, "write -P 0x41 0 1M", "flush");
        AssertSecondary(p, m, mirrorFailed: 0);

        Signal(server.ProcessId, "KILL");
        WaitUntil(() => !IsRunning(server.ProcessId), "the destination tapdisk to die");
        QemuIo(nbd, "write -P 0x42 2M 1M", "write -P 0x43 8M 64k", "flush");
        QemuIo(nbd, "read -P 0x41 0 1M", "read -P 0x42 2M 1M", "read -P 0x43 8M 64k");
        AssertSecondary(p, m, mirrorFailed: 1, images: 1);

        Destroy(pid, p, m);
    }

    /// <summary>
    /// The destination stalls (its tapdisk stopped with SIGSTOP: connected, reading nothing, answering nothing): the
    /// guest's write waits at most the NBD client's request timeout (30 s), then the secondary is dropped, the write
    /// succeeds on the primary, and stats say nbd_mirror_failed 1.
    /// </summary>
    [Fact]
    public void Mirror_DestinationStalls_DroppedAfterTheClientsTimeout_WriterSeesNoError()
    {
        string primary = SparseFile("primary.raw", 16 * Mib);
        string destination = SparseFile("destination.raw", 16 * Mib);
        using Served server = Serve("aio:" + destination, readOnly: false);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "nbd:" + server.Socket);
        QemuIo(nbd, "write -P 0x61 0 64k", "flush");
        Signal(server.ProcessId, "STOP");
        try
        {
            QemuIo(nbd, "write -P 0x62 1M 64k", "flush");
            QemuIo(nbd, "read -P 0x61 0 64k", "read -P 0x62 1M 64k");
            AssertSecondary(p, m, mirrorFailed: 1, images: 1);
        }
        finally
        {
            Signal(server.ProcessId, "CONT");
        }

        Destroy(pid, p, m);
    }

    /// <summary>An nbd secondary nobody serves: the disk opens and serves, with nbd_mirror_failed 1 (blktap's answer).</summary>
    [Fact]
    public void Secondary_NbdNobodyServes_OpensWithMirrorFailed()
    {
        string primary = SparseFile("primary.raw", 16 * Mib);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "nbd:" + Path.Combine(Root, "nobody.sock"));
        QemuIo(nbd, "write -P 0x51 0 64k", "read -P 0x51 0 64k");
        AssertSecondary(p, m, mirrorFailed: 1);

        Destroy(pid, p, m);
    }

    /// <summary>A secondary of another size: EINVAL on create (nothing left open) and on unpause (stays paused, nothing held).</summary>
    [Fact]
    public void Secondary_OfAnotherSize_EinvalAndNothingOpened()
    {
        string primary = SparseFile("primary.raw", 16 * Mib);
        string small = SparseFile("small.raw", 8 * Mib);
        ProcessResult created = TapCtl("create", "-a", "aio:" + primary, "-2", "aio:" + small);
        Assert.Equal(22, created.ExitCode);
        Assert.DoesNotContain(List(), row => row.ContainsKey("args"));

        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary);
        TapCtlOk("pause", "-p", p, "-m", m);
        ProcessResult resumed = TapCtl("unpause", "-p", p, "-m", m, "-2", "aio:" + small);
        Assert.Equal(22, resumed.ExitCode);
        Assert.NotEqual("0", Assert.Single(List())["state"]);
        Assert.False(HoldsOpen(pid, small));
        Assert.False(HoldsOpen(pid, primary));

        TapCtlOk("unpause", "-p", p, "-m", m);
        QemuIo(nbd, "write -P 0x44 0 64k");
        Assert.Equal(1, ImageCount(p, m));
        Assert.Equal(new byte[65536], File.ReadAllBytes(small)[..65536]);
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>
    /// Standby (-2 with -s) on a primary whose file system is full (a 1 MiB tmpfs): writes switch to the secondary
    /// without an error, blktap's signal file appears, the redirect count counts, and every read returns the newest
    /// data, wherever it landed.
    /// </summary>
    [Fact]
    public void Standby_PrimaryFileSystemFull_WritesSwitchToTheSecondaryAndReadsStayCorrect()
    {
        using var fs = SmallFileSystem.Mount(Scratch.File("fs"), "1m");
        string primary = Path.Combine(fs.Path, "primary.raw");
        using (FileStream f = File.Create(primary))
        {
            f.SetLength(16 * Mib);
        }

        string secondary = SparseFile("secondary.raw", 16 * Mib);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary, "-2", "aio:" + secondary, "-s");
        string signal = Path.Combine(Root, "tapdisk-enospc" + m);
        QemuIo(nbd, "write -P 0x70 0 512k");
        Assert.False(File.Exists(signal));
        Assert.Equal(1, ImageCount(p, m));

        QemuIo(nbd, "write -P 0x71 256k 4M", "write -P 0x72 8M 64k");
        QemuIo(nbd, "read -P 0x70 0 256k", "read -P 0x71 256k 4M", "read -P 0x72 8M 64k", "read -P 0 9M 1M");
        Assert.True(File.Exists(signal));
        using (JsonDocument stats = Stats(p, m))
        {
            long redirected = stats.RootElement.GetProperty("FIXME_enospc_redirect_count").GetInt64();
            Assert.InRange(redirected, 128, (4 * Mib + 65536) / 512);
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
            Assert.Equal(2, stats.RootElement.GetProperty("images").GetArrayLength());
        }

        // Across a pause the secondary keeps its place (it holds data the primary lacks), and it cannot be removed.
        TapCtlOk("pause", "-p", p, "-m", m);
        Assert.Equal(16, TapCtl("unpause", "-p", p, "-m", m, "-2", "null").ExitCode); // EBUSY
        TapCtlOk("unpause", "-p", p, "-m", m);
        QemuIo(nbd, "read -P 0x70 0 256k", "read -P 0x71 256k 4M", "read -P 0x72 8M 64k");
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>The SXM steps against an NBD destination (<paramref name="secondary"/> for tap-ctl, <paramref name="targetOpts"/> for qemu-img).</summary>
    private void MigrateThroughNbd(string secondary, string targetOpts)
    {
        string primary = SparseFile("primary.raw", 32 * Mib);
        (int pid, string p, string m, string nbd) = Create("-a", "aio:" + primary);
        QemuIo(nbd, "write -P 0x11 0 8M", "write -P 0x12 12M 1M");
        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m, "-2", secondary);
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
            Assert.Equal(2, stats.RootElement.GetProperty("images").GetArrayLength());
        }

        CopyFirstHalfWhileTheGuestWrites(nbd, targetOpts);

        QemuIo(nbd, "write -P 0x33 1M 64k", "write -P 0x34 20M 128k", "write -z 3M 64k", "discard 5M 64k", "flush");
        TapCtlOk("pause", "-p", p, "-m", m);
        TapCtlOk("unpause", "-p", p, "-m", m, "-2", "null");
        using (JsonDocument stats = Stats(p, m))
        {
            Assert.Equal(0, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
            Assert.Equal(1, stats.RootElement.GetProperty("images").GetArrayLength());
        }

        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>
    /// SXM's copy: the first half of the disk copied from its NBD export to the destination (<paramref name="targetOpts"/>,
    /// qemu-img's file options) while the guest writes the second half.
    /// </summary>
    private void CopyFirstHalfWhileTheGuestWrites(string nbd, string targetOpts)
    {
        var writes = new List<string>();
        for (int i = 0; i < 128; i++)
        {
            writes.Add(FormattableString.Invariant($"write -P 0x{0x20 + (i % 64):x2} {16 * Mib + (i * 37 % 256) * 65536} 64k"));
        }

        var writer = StartHelper(ExternalTool.Require("qemu-io"), ["-f", "raw", .. writes.SelectMany(w => new[] { "-c", w }), NbdUri(nbd)]);
        var copy = StartHelper(ExternalTool.Require("qemu-img"), "convert", "-n",
            "--image-opts", FormattableString.Invariant($"driver=raw,size={16 * Mib},file.driver=nbd,file.path={nbd}"),
            "--target-image-opts", FormattableString.Invariant($"driver=raw,size={16 * Mib},{targetOpts}"));
        Assert.True(copy.WaitForExit(HangGuard) && copy.ExitCode == 0, "qemu-img convert of the first half failed");
        Assert.True(writer.WaitForExit(HangGuard) && writer.ExitCode == 0, "the writer failed during the copy");
    }

    private static int FreeTcpPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool TcpAccepts(int port)
    {
        try
        {
            using var client = new System.Net.Sockets.TcpClient();
            client.Connect(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private (int Pid, string P, string M, string Nbd) Create(params string[] args)
    {
        TapCtlOk(["create", .. args]);
        Dictionary<string, string> row = Assert.Single(List(), r => r.ContainsKey("args"));
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        return (pid, row["pid"], row["minor"], NbdSocket(pid, int.Parse(row["minor"], CultureInfo.InvariantCulture)));
    }

    /// <summary>What stats say of the secondary: nbd_mirror_failed, and how many images are listed (the secondary is one).</summary>
    private void AssertSecondary(string p, string m, int mirrorFailed, int? images = null)
    {
        using JsonDocument stats = Stats(p, m);
        Assert.Equal(mirrorFailed, stats.RootElement.GetProperty("nbd_mirror_failed").GetInt32());
        if (images is { } count)
        {
            Assert.Equal(count, stats.RootElement.GetProperty("images").GetArrayLength());
        }
    }

    private void Destroy(int pid, string p, string m)
    {
        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    private JsonDocument Stats(string p, string m) => JsonDocument.Parse(TapCtlOk("stats", "-p", p, "-m", m));

    private int ImageCount(string p, string m)
    {
        using JsonDocument stats = Stats(p, m);
        return stats.RootElement.GetProperty("images").GetArrayLength();
    }

    private string SparseFile(string name, long bytes)
    {
        string file = Scratch.File(name);
        using FileStream f = File.Create(file);
        f.SetLength(bytes);
        return file;
    }

    private static string Sha256(string file)
    {
        using FileStream f = File.OpenRead(file);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    /// <summary>Whether any of the process's descriptors is open on <paramref name="file"/>.</summary>
    private static bool HoldsOpen(int pid, string file)
    {
        foreach (string fd in Directory.EnumerateFiles("/proc/" + pid.ToString(CultureInfo.InvariantCulture) + "/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == file)
                {
                    return true;
                }
            }
            catch (IOException)
            {
                // Closed while we looked.
            }
        }

        return false;
    }

    /// <summary>A tmpfs of a given size: a real file system that runs out of space. Needs root.</summary>
    private sealed class SmallFileSystem : IDisposable
    {
        private SmallFileSystem(string path)
        {
            Path = path;
        }

        public string Path { get; }

        public static SmallFileSystem Mount(string path, string size)
        {
            Assert.True(System.Environment.UserName == "root", "these tests mount a small tmpfs to get a real ENOSPC: run them as root");
            Directory.CreateDirectory(path);
            ExternalTool.Run(ExternalTool.Require("mount"), ["-t", "tmpfs", "-o", "size=" + size, "tmpfs", path], stdin: null, HangGuard)
                .EnsureSuccess("mount tmpfs on " + path);
            return new SmallFileSystem(path);
        }

        public void Dispose()
        {
            // Lazy: a tapdisk killed by the teardown may still hold a file here for a moment.
            ExternalTool.Run(ExternalTool.Require("umount"), ["-l", Path], stdin: null, HangGuard).EnsureSuccess("umount " + Path);
        }
    }
}
