using System.Globalization;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// The nbd disk type end to end: a VBD whose image is a qemu-nbd export, served to qemu-io; and parent stacking
/// (tap-ctl open -e), where a differencing VHD's parent is read through the export of the VBD serving it.
/// </summary>
public sealed class NbdDiskTypeTests : IntegrationTest
{
    [Fact]
    public void CreateNbdImage_QemuNbdExport_ServedToQemuIo_WritesReachTheFile()
    {
        string file = Scratch.File("remote.raw");
        using (FileStream f = File.Create(file))
        {
            f.SetLength(16 * 1024 * 1024);
        }

        ExternalTool.Run(ExternalTool.Require("qemu-io"), ["-f", "raw", "-c", "write -P 0x5a 0 1M", file], stdin: null, HangGuard).EnsureSuccess("qemu-io write");
        string remote = Path.Combine(Root, "remote.sock");
        StartHelper(ExternalTool.Require("qemu-nbd"), "-t", "-f", "raw", "-k", remote, file);
        WaitUntil(() => File.Exists(remote), "qemu-nbd to listen");

        TapCtlOk("create", "-a", "nbd:" + remote);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture), minor = int.Parse(row["minor"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        Assert.Equal("nbd:" + remote, row["args"]);
        Assert.Equal(16L * 1024 * 1024, NbdExportSize(NbdSocket(pid, minor)));

        QemuIo(NbdSocket(pid, minor), "read -P 0x5a 0 1M", "write -P 0x77 1M 1M", "aio_write -P 0x33 4M 64k", "aio_write -P 0x34 5M 64k", "aio_flush", "read -P 0x77 1M 1M");
        TapCtlOk("destroy", "-p", row["pid"], "-m", row["minor"]);

        // Checked on the file itself, by qemu: everything went through qemu-nbd.
        ExternalTool.Run(ExternalTool.Require("qemu-io"), ["-f", "raw", "-r", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0x77 1M 1M", "-c", "read -P 0x33 4M 64k", "-c", "read -P 0x34 5M 64k", "-c", "read -P 0 6M 1M", file], stdin: null, HangGuard)
            .EnsureSuccess("qemu-io check");
    }

    [Fact]
    public void OpenNbdImage_NoServer_RefusedWithEnoent()
    {
        int pid = Spawn();
        int minor = Allocate();
        string p = pid.ToString(CultureInfo.InvariantCulture), m = minor.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", m);
        ProcessResult r = TapCtl("open", "-p", p, "-m", m, "-a", "nbd:" + Path.Combine(Root, "nobody-listens"));
        Assert.Equal(2, r.ExitCode); // ENOENT: neither a socket nor host:port
        TapCtlOk("detach", "-p", p, "-m", m);
    }

    [Fact]
    public void OpenWithParentMinor_LeafWithoutParent_RefusedWithEinval_VbdStaysClosed()
    {
        string parent = CreateVhd("base.vhd", 16);
        string raw = Scratch.File("plain.raw");
        using (FileStream f = File.Create(raw))
        {
            f.SetLength(16 * 1024 * 1024);
        }

        int pid = Spawn();
        string p = pid.ToString(CultureInfo.InvariantCulture);
        int parentMinor = Allocate(), leafMinor = Allocate();
        string pm = parentMinor.ToString(CultureInfo.InvariantCulture), lm = leafMinor.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", pm);
        TapCtlOk("open", "-p", p, "-m", pm, "-R", "-a", "vhd:" + parent);
        TapCtlOk("attach", "-p", p, "-m", lm);

        // A raw leaf and a dynamic (parentless) VHD leaf have nothing to read through the other VBD.
        Assert.Equal(22, TapCtl("open", "-p", p, "-m", lm, "-a", "aio:" + raw, "-e", pm).ExitCode);
        Assert.Equal(22, TapCtl("open", "-p", p, "-m", lm, "-a", "vhd:" + CreateVhd("other.vhd", 16), "-e", pm).ExitCode);

        // Nothing stayed open: the same minor opens normally afterwards.
        TapCtlOk("open", "-p", p, "-m", lm, "-a", "aio:" + raw);
        TapCtlOk("close", "-p", p, "-m", lm);
        TapCtlOk("close", "-p", p, "-m", pm);
        TapCtlOk("detach", "-p", p, "-m", lm);
        TapCtlOk("detach", "-p", p, "-m", pm);
        WaitForExit(pid);
        TapCtlOk("free", "-m", lm);
        TapCtlOk("free", "-m", pm);
    }

    [Fact]
    public void OpenWithParentMinor_LeafReadsParentThroughItsExport()
    {
        // The parent's data, written through a VBD of its own, then a leaf on it.
        string parent = CreateVhd("base.vhd", 16);
        TapCtlOk("create", "-a", "vhd:" + parent);
        Dictionary<string, string> first = Assert.Single(List());
        QemuIo(NbdSocket(int.Parse(first["pid"], CultureInfo.InvariantCulture), int.Parse(first["minor"], CultureInfo.InvariantCulture)), "write -P 1 0 1M", "write -P 2 8M 64k");
        TapCtlOk("destroy", "-p", first["pid"], "-m", first["minor"]);
        string leaf = Scratch.File("leaf.vhd");
        VhdUtilOk("snapshot", "-n", leaf, "-p", parent);

        // One tapdisk serving both, as blktap's -e expects: the parent read-only, then the leaf stacked on it.
        int pid = Spawn();
        string p = pid.ToString(CultureInfo.InvariantCulture);
        int parentMinor = Allocate(), leafMinor = Allocate();
        string pm = parentMinor.ToString(CultureInfo.InvariantCulture), lm = leafMinor.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", pm);
        TapCtlOk("open", "-p", p, "-m", pm, "-R", "-a", "vhd:" + parent);

        // The parent file leaves its path (the parent VBD keeps it open): the leaf can reach it only through NBD.
        File.Move(parent, parent + ".moved");
        TapCtlOk("attach", "-p", p, "-m", lm);
        ProcessResult missing = TapCtl("open", "-p", p, "-m", lm, "-a", "vhd:" + leaf, "-e", "999");
        Assert.Equal(2, missing.ExitCode); // ENOENT: no tapdisk serves minor 999
        TapCtlOk("open", "-p", p, "-m", lm, "-a", "vhd:" + leaf, "-e", pm);

        string leafSocket = NbdSocket(pid, leafMinor);
        QemuIo(leafSocket, "read -P 1 0 1M", "read -P 2 8M 64k", "read -P 0 1M 1M", "write -P 3 512k 64k", "read -P 3 512k 64k", "read -P 1 576k 448k");
        QemuIoReadOnly(NbdSocket(pid, parentMinor), "read -P 1 512k 64k");

        // A second open of the same leaf stacking on the leaf's own minor is refused (it would read itself).
        TapCtlOk("close", "-p", p, "-m", lm);
        Assert.Equal(22, TapCtl("open", "-p", p, "-m", lm, "-a", "vhd:" + leaf, "-e", lm).ExitCode);
        TapCtlOk("close", "-p", p, "-m", pm);
        TapCtlOk("detach", "-p", p, "-m", lm);
        TapCtlOk("detach", "-p", p, "-m", pm);
        WaitForExit(pid);
        TapCtlOk("free", "-m", lm);
        TapCtlOk("free", "-m", pm);

        // The leaf kept its own write over the parent's data, now read the ordinary way (parent by its locator).
        File.Move(parent + ".moved", parent);
        TapCtlOk("create", "-R", "-a", "vhd:" + leaf);
        Dictionary<string, string> again = Assert.Single(List());
        QemuIoReadOnly(NbdSocket(int.Parse(again["pid"], CultureInfo.InvariantCulture), int.Parse(again["minor"], CultureInfo.InvariantCulture)), "read -P 1 0 512k", "read -P 3 512k 64k", "read -P 2 8M 64k");
        TapCtlOk("destroy", "-p", again["pid"], "-m", again["minor"]);
    }
}
