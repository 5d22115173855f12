using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// One VHD through its whole life with the real tap-ctl and tapdisk: create, NBD I/O, stats, pause, snapshot while
/// paused, unpause onto the new leaf, destroy; then the chain is read back with tapdisk serve + nbdcopy.
/// </summary>
public sealed class TapdiskLifecycleTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    [Fact]
    public void CreatePauseSnapshotUnpauseDestroy_DataAndStateAsExpected()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        string file = CreateVhd("base.vhd", 64);

        // create prints the marker path of the minor it allocated.
        string created = TapCtlOk("create", "-a", "vhd:" + file).Trim();
        string markerPrefix = Path.Combine(Root, "tapdisk", "tapdisk-");
        Assert.StartsWith(markerPrefix, created, StringComparison.Ordinal);
        int minor = int.Parse(created[markerPrefix.Length..], CultureInfo.InvariantCulture);

        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        Assert.Equal(minor.ToString(CultureInfo.InvariantCulture), row["minor"]);
        Assert.Equal("0", row["state"]);
        Assert.Equal("vhd:" + file, row["args"]);

        string nbd = NbdSocket(pid, minor);
        Assert.Equal(64L * Mib, NbdExportSize(nbd));
        string[] receivers = [Path.Combine(Root, FormattableString.Invariant($"nbdserver{pid}.{minor}")), Path.Combine(Root, FormattableString.Invariant($"nbdserver-new{pid}.{minor}"))];
        Assert.All(receivers, r => Assert.True(File.Exists(r), r + " (fd receiver) missing"));
        QemuIo(nbd, "write -P 0x11 0 1M", "flush");

        // stats: valid JSON naming the VBD and its vhd image.
        string stats = TapCtlOk("stats", "-p", pid.ToString(CultureInfo.InvariantCulture), "-m", minor.ToString(CultureInfo.InvariantCulture));
        using (JsonDocument doc = JsonDocument.Parse(stats))
        {
            Assert.Equal("vhd:" + file, doc.RootElement.GetProperty("name").GetString());
            Assert.Equal("vhd", doc.RootElement.GetProperty("images")[0].GetProperty("driver").GetProperty("name").GetString());
        }

        string p = pid.ToString(CultureInfo.InvariantCulture), m = minor.ToString(CultureInfo.InvariantCulture);
        using RawNbdClient held = RawNbdClient.Connect(nbd);
        Assert.Equal(64L * Mib, held.Size);
        Assert.All(held.Read(0, 4096), b => Assert.Equal(0x11, b));

        TapCtlOk("pause", "-p", p, "-m", m);
        Assert.Equal("0x2a", Assert.Single(List())["state"]);

        // A request sent by the held client while paused is answered after the resume, from the new chain.
        ulong pending = held.SendRead(512 * 1024, 4096);

        string leaf = Scratch.File("leaf.vhd");
        VhdUtilOk("snapshot", "-n", leaf, "-p", file);
        TapCtlOk("unpause", "-p", p, "-m", m, "-a", "vhd:" + leaf);
        row = Assert.Single(List());
        Assert.Equal("0", row["state"]);
        Assert.Equal("vhd:" + leaf, row["args"]);

        Assert.All(held.ReceiveRead(pending, 4096), b => Assert.Equal(0x11, b));
        Assert.All(held.Read(0, 4096), b => Assert.Equal(0x11, b));

        // Data written before the pause is visible through the leaf; new writes land in the leaf.
        QemuIo(nbd, "read -P 0x11 0 1M", "write -P 0x22 1M 1M", "write -P 0x33 60M 64k", "flush");
        Assert.All(held.Read(Mib, 4096), b => Assert.Equal(0x22, b));
        Assert.True(long.Parse(VhdUtilOk("query", "-n", leaf, "-a").Trim(), CultureInfo.InvariantCulture) > 0, "no block allocated in the leaf");
        held.Dispose();

        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
        Assert.False(File.Exists(Marker(minor)), "marker not freed");
        Assert.False(File.Exists(nbd), "NBD socket left behind");
        Assert.False(File.Exists(OldNbdSocket(pid, minor)), "old-style NBD socket left behind");
        Assert.All(receivers, r => Assert.False(File.Exists(r), r + " (fd receiver) left behind"));
        Assert.False(File.Exists(ControlSocket(pid)), "control socket left behind");
        Assert.Empty(List());

        Assert.Contains("is valid", VhdUtilOk("check", "-n", leaf, "-p"), StringComparison.Ordinal);
        Assert.Contains("is valid", VhdUtilOk("check", "-n", file), StringComparison.Ordinal);

        // qemu-img cannot follow our chain, so read it back through tapdisk serve.
        string raw = Scratch.File("content.raw");
        using (Served served = Serve("vhd:" + leaf))
        {
            ExternalTool.Run(nbdcopy, [NbdUri(served.Socket), raw], stdin: null, HangGuard).EnsureSuccess("nbdcopy");
        }

        byte[] expected = new byte[64 * Mib];
        expected.AsSpan(0, Mib).Fill(0x11);
        expected.AsSpan(Mib, Mib).Fill(0x22);
        expected.AsSpan(60 * Mib, 64 * 1024).Fill(0x33);
        byte[] actual = File.ReadAllBytes(raw);
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.AsSpan().SequenceEqual(actual), "chain content differs from the pattern written");
    }

    [Fact]
    public void Unpause_OtherSize_Emediumtype_KeepsOldName_ThenOriginalResumes()
    {
        string file = CreateVhd("a.vhd", 16);
        string other = CreateVhd("b.vhd", 32);
        TapCtlOk("create", "-a", "vhd:" + file);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        string p = row["pid"], m = row["minor"];

        ProcessResult notPaused = TapCtl("unpause", "-p", p, "-m", m);
        Assert.Equal(22, notPaused.ExitCode);

        TapCtlOk("pause", "-p", p, "-m", m);
        ProcessResult wrong = TapCtl("unpause", "-p", p, "-m", m, "-a", "vhd:" + other);
        Assert.Equal(124, wrong.ExitCode);
        row = Assert.Single(List());
        Assert.Equal("0x22a", row["state"]);

        // Deliberately unlike the reference (which keeps the rejected name, control-xen.md 3.4): the old name stays.
        Assert.Equal("vhd:" + file, row["args"]);

        TapCtlOk("unpause", "-p", p, "-m", m, "-a", "vhd:" + file);
        row = Assert.Single(List());
        Assert.Equal("0", row["state"]);
        Assert.Equal("vhd:" + file, row["args"]);
        QemuIo(NbdSocket(pid, int.Parse(m, CultureInfo.InvariantCulture)), "write -P 0x44 0 64k", "read -P 0x44 0 64k");

        TapCtlOk("destroy", "-p", p, "-m", m);
        WaitForExit(pid);
    }

    /// <summary>
    /// A toolstack that destroys and then lists must not see the tapdisk it just destroyed: by the time tap-ctl has the
    /// DETACH reply, ctl&lt;pid&gt; is gone (control-xen.md 4.4). Repeated because the failure this guards against was
    /// a race (the exiting tapdisk still answered LIST for a few milliseconds).
    /// </summary>
    [Fact]
    public void Destroy_ThenList_NeverShowsTheDestroyedTapdisk()
    {
        string file = Scratch.File("disk.raw");
        using (FileStream f = File.Create(file))
        {
            f.SetLength(1024 * 1024);
        }

        string markerPrefix = Path.Combine(Root, "tapdisk", "tapdisk-");
        for (int round = 0; round < 20; round++)
        {
            string created = TapCtlOk("create", "-a", "aio:" + file).Trim();
            Assert.StartsWith(markerPrefix, created, StringComparison.Ordinal);
            string m = created[markerPrefix.Length..];
            string p = Assert.Single(List("-m", m))["pid"];
            int pid = int.Parse(p, CultureInfo.InvariantCulture);
            TrackTapdisk(pid);

            TapCtlOk("destroy", "-p", p, "-m", m);

            List<Dictionary<string, string>> rows = List();
            Assert.False(rows.Exists(r => r.TryGetValue("pid", out string? listed) && listed == p), $"round {round}: list after destroy shows pid={p}");
            Assert.False(rows.Exists(r => r.TryGetValue("minor", out string? listed) && listed == m), $"round {round}: list after destroy shows minor={m}");

            // The deterministic half of the same rule: the socket was unlinked before the DETACH reply was sent.
            Assert.False(File.Exists(ControlSocket(pid)), $"round {round}: ctl{pid} still exists after destroy returned");
            WaitForExit(pid);
        }
    }
}
