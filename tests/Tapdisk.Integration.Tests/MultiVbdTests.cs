using System.Globalization;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>Two VBDs in one tapdisk process, driven step by step with tap-ctl spawn/attach/open/close/detach.</summary>
public sealed class MultiVbdTests : IntegrationTest
{
    [Fact]
    public void TwoDisksOneProcess_CloseOne_OtherKeepsServing()
    {
        string rawFile = Scratch.File("disk.raw");
        using (FileStream f = File.Create(rawFile))
        {
            f.SetLength(32L * 1024 * 1024);
        }

        string vhdFile = CreateVhd("disk.vhd", 16);
        int a = Allocate(), b = Allocate();
        int pid = Spawn();
        string p = pid.ToString(CultureInfo.InvariantCulture);
        string ma = a.ToString(CultureInfo.InvariantCulture), mb = b.ToString(CultureInfo.InvariantCulture);

        TapCtlOk("attach", "-p", p, "-m", ma);
        TapCtlOk("attach", "-p", p, "-m", mb);
        TapCtlOk("open", "-p", p, "-m", ma, "-a", "aio:" + rawFile);
        TapCtlOk("open", "-p", p, "-m", mb, "-a", "vhd:" + vhdFile);

        // The reference lists one tapdisk's VBDs in reverse attach order (reference-transcript.md).
        List<Dictionary<string, string>> rows = List();
        Assert.Equal([mb, ma], rows.Select(r => r["minor"]));
        Assert.All(rows, r => Assert.Equal(p, r["pid"]));
        Assert.Equal(["vhd:" + vhdFile, "aio:" + rawFile], rows.Select(r => r["args"]));

        Assert.Equal(32L * 1024 * 1024, NbdExportSize(NbdSocket(pid, a)));
        Assert.Equal(16L * 1024 * 1024, NbdExportSize(NbdSocket(pid, b)));
        QemuIo(NbdSocket(pid, a), "write -P 0xa1 0 2M", "flush");
        QemuIo(NbdSocket(pid, b), "write -P 0xb2 1M 2M", "flush");
        QemuIo(NbdSocket(pid, a), "read -P 0xa1 0 2M", "read -P 0 2M 1M");
        QemuIo(NbdSocket(pid, b), "read -P 0 0 1M", "read -P 0xb2 1M 2M");

        // Close A: its sockets go, B keeps serving; both stay listed (A closed: state 0x2, no args).
        TapCtlOk("close", "-p", p, "-m", ma);
        Assert.False(File.Exists(NbdSocket(pid, a)), "closed VBD's NBD socket left behind");
        QemuIo(NbdSocket(pid, b), "read -P 0xb2 1M 2M", "write -P 0xb3 8M 1M", "read -P 0xb3 8M 1M");
        rows = List();
        Assert.Equal([mb, ma], rows.Select(r => r["minor"]));
        Assert.Equal("0", rows[0]["state"]);
        Assert.Equal("0x2", rows[1]["state"]);

        // The raw file holds what was written through A.
        byte[] head = new byte[2 * 1024 * 1024];
        using (FileStream f = File.OpenRead(rawFile))
        {
            f.ReadExactly(head);
        }

        Assert.All(head, x => Assert.Equal(0xa1, x));

        // Detaching A leaves the process up for B; the last detach ends it.
        TapCtlOk("detach", "-p", p, "-m", ma);
        Assert.True(IsRunning(pid), "tapdisk exited while a VBD was still attached");
        QemuIo(NbdSocket(pid, b), "read -P 0xb3 8M 1M");
        TapCtlOk("close", "-p", p, "-m", mb);
        TapCtlOk("detach", "-p", p, "-m", mb);
        WaitForExit(pid);
        Assert.False(File.Exists(ControlSocket(pid)), "control socket left behind");
        Assert.Contains("is valid", VhdUtilOk("check", "-n", vhdFile), StringComparison.Ordinal);
    }
}
