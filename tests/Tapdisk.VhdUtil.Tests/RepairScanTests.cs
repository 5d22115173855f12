using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>"vhd-util repair" and "vhd-util scan" (reference-transcript.md 10.1, 10.9, 6.1).</summary>
public sealed class RepairScanTests
{
    [Fact]
    public void Repair_BadOrMissingTrailingFooter_RebuiltAndDataKept()
    {
        using var dir = new TempDirectory();
        byte[] shadow = new byte[16 * MiB];
        VhdCreator.CreateDynamic(dir.File("rp.vhd"), shadow.Length);
        using (IBlockImage image = Open(dir.File("rp.vhd")))
        {
            Write(image, 3 * MiB, Pattern(MiB, 1), shadow);
        }

        byte[] good = File.ReadAllBytes(dir.File("rp.vhd"));
        byte[] flipped = (byte[])good.Clone();
        flipped[^(512 - 64)] ^= 0xFF;
        File.WriteAllBytes(dir.File("rp.vhd"), flipped);
        Assert.StartsWith("primary footer invalid: invalid checksum\nrp.vhd appears invalid; dumping metadata\n", Run(dir.Path, "check", "-n", "rp.vhd").StandardOutput, StringComparison.Ordinal);
        Assert.Equal(string.Empty, Ok(dir.Path, "repair", "-n", "rp.vhd", "-b"));
        AssertValid(dir.Path, "rp.vhd");
        Assert.Equal(good, File.ReadAllBytes(dir.File("rp.vhd")));

        // Without -b the trailing footer is preferred, and when it is gone the copy at 0 is used.
        File.WriteAllBytes(dir.File("rp.vhd"), good[..^512]);
        Ok(dir.Path, "repair", "-n", "rp.vhd");
        AssertValid(dir.Path, "rp.vhd", "-b");
        AssertSameContent(shadow, ReadAll(dir.File("rp.vhd")), "after repair");
        AssertQemuSees(dir.File("rp.vhd"), shadow);

        // A null UUID gets a fresh one.
        byte[] nullUuid = (byte[])good.Clone();
        foreach (int at in new[] { 0, nullUuid.Length - 512 })
        {
            VhdFooter f = VhdFooter.Read(nullUuid.AsSpan(at, 512));
            f.UniqueId = new byte[16];
            f.UpdateChecksum();
            f.Write(nullUuid.AsSpan(at, 512));
        }

        File.WriteAllBytes(dir.File("rp.vhd"), nullUuid);
        Assert.StartsWith("primary footer invalid: invalid uuid\n", Run(dir.Path, "check", "-n", "rp.vhd").StandardOutput, StringComparison.Ordinal);
        Ok(dir.Path, "repair", "-n", "rp.vhd");
        AssertValid(dir.Path, "rp.vhd");

        ProcessResult r = Run(dir.Path, "repair", "-n", "nonexistent.vhd", "-b");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error opening nonexistent.vhd: -2\n", r.StandardOutput);
        r = Run(dir.Path, "repair");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("options: <-n name> <-b use the back-up footer> [-h help]\n", r.StandardOutput);

        File.WriteAllBytes(dir.File("junk.vhd"), new byte[4096]);
        r = Run(dir.Path, "repair", "-n", "junk.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal(new byte[4096], File.ReadAllBytes(dir.File("junk.vhd")));
    }

    [Fact]
    public void Scan_ReferenceFormats()
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "base.vhd", "-s", "16");
        Ok(dir.Path, "snapshot", "-n", "mid.vhd", "-p", "base.vhd", "-e");
        Ok(dir.Path, "snapshot", "-n", "leaf.vhd", "-p", "mid.vhd", "-e");
        Ok(dir.Path, "create", "-n", "lone.vhd", "-s", "8");
        string[] all = ["base.vhd", "leaf.vhd", "lone.vhd", "mid.vhd"];

        const string Base = "vhd=base.vhd capacity=16777216 size=3584 hidden=0 parent=none";
        const string Leaf = "vhd=leaf.vhd capacity=16777216 size=5120 hidden=0 parent=mid.vhd";
        const string Lone = "vhd=lone.vhd capacity=8388608 size=3584 hidden=0 parent=none";
        const string Mid = "vhd=mid.vhd capacity=16777216 size=5120 hidden=0 parent=base.vhd";
        Assert.Equal($"{Base}\n{Leaf}\n{Lone}\n{Mid}\n", Ok(dir.Path, ["scan", .. all]));
        Assert.Equal($"{Base}\n{Leaf}\n{Lone}\n{Mid}\n", Ok(dir.Path, ["scan", "-f", .. all]));
        Assert.Equal($"{Base}\n   {Mid}\n      {Leaf}\n{Lone}\n", Ok(dir.Path, ["scan", "-p", .. all]));
        Assert.Equal(
            $"{Base}\n{Leaf.Replace("parent=mid.vhd", "parent=" + dir.File("mid.vhd"), StringComparison.Ordinal)}\n{Lone}\n{Mid.Replace("parent=base.vhd", "parent=" + dir.File("base.vhd"), StringComparison.Ordinal)}\n",
            Ok(dir.Path, ["scan", "-v", .. all]));
        Assert.Equal($"{Lone}\n{Leaf}\n", Ok(dir.Path, "scan", dir.File("lone.vhd"), dir.File("leaf.vhd")));
        Assert.Equal($"{Leaf}\n{Mid}\n{Base}\n", Ok(dir.Path, "scan", "-a", "leaf.vhd"));
        Assert.Equal($"{Base}\n   {Mid}\n      {Leaf}\n", Ok(dir.Path, "scan", "-a", "-p", "leaf.vhd"));
        Assert.Equal($"{Base}\n   {Mid}\n      {Leaf}\n{Lone}\n", Ok(dir.Path, "scan", "-m", dir.File("*.vhd"), "-p"));
        Assert.Equal($"{Leaf}\n{Lone}\n", Ok(dir.Path, "scan", "-m", "l*.vhd"));
        Assert.Equal(string.Empty, Ok(dir.Path, "scan", "-m", "nomatch*"));
        Assert.Equal(Base.Replace(" parent", " marker=0 keyhash= parent", StringComparison.Ordinal) + "\n", Ok(dir.Path, "scan", "-M", "base.vhd"));

        ProcessResult r = Run(dir.Path, "scan", "nonexistent.vhd", "lone.vhd");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("vhd=nonexistent.vhd scan-error=-2 error-message='failure scanning target'\n", r.StandardOutput);
        Assert.Equal("scan failed: -2. Check syslog for details\n", r.StandardError);

        File.WriteAllBytes(dir.File("junk.vhd"), new byte[1000]);
        r = Run(dir.Path, "scan", "junk.vhd", "lone.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("vhd=junk.vhd scan-error=-22 error-message='opening file'\n", r.StandardOutput);
        Assert.Equal($"vhd=junk.vhd scan-error=-22 error-message='opening file'\n{Lone}\n", Ok(dir.Path, "scan", "-c", "junk.vhd", "lone.vhd"));

        r = Run(dir.Path, "scan", "-l", "VG_none", "-m", "VHD-*");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("lvm_scan_vg failed -22\nscan failed: -22. Check syslog for details\n", r.StandardError);
        r = Run(dir.Path, "scan");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("usage: [OPTIONS] FILES\n", r.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(0, Run(dir.Path, "scan", "-h").ExitCode);
    }
}
