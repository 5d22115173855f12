using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>"vhd-util fill" and "vhd-util modify" (reference-transcript.md 10.3, 10.6).</summary>
public sealed class FillModifyTests
{
    private const long Size = 16L * MiB;

    [Fact]
    public void Fill_DifferencingChild_AllocatesEveryBlockAndKeepsTheChainsContent()
    {
        using var dir = new TempDirectory();
        byte[] shadow = new byte[Size];
        VhdCreator.CreateDynamic(dir.File("base.vhd"), Size);
        using (IBlockImage p = Open(dir.File("base.vhd")))
        {
            Write(p, 3 * MiB, Pattern(MiB, 1), shadow);
        }

        Ok(dir.Path, "snapshot", "-n", "mid.vhd", "-p", "base.vhd", "-e");
        using (IBlockImage c = Open(dir.File("mid.vhd")))
        {
            Write(c, 9 * MiB, Pattern(4096, 2), shadow);
        }

        Assert.Equal(string.Empty, Ok(dir.Path, "fill", "-n", "mid.vhd"));
        Assert.Equal("8\n", Ok(dir.Path, "query", "-n", "mid.vhd", "-a"));
        AssertValid(dir.Path, "mid.vhd", "-p", "-b");
        AssertSameContent(shadow, ReadAll(dir.File("mid.vhd")), "chain after fill");

        // Every sector of the child is now its own: coalescing copies all of them.
        Assert.Equal($"Coalesced {Size / 512} sectors", Ok(dir.Path, "coalesce", "-n", "mid.vhd"));
        AssertSameContent(shadow, ReadAll(dir.File("base.vhd")), "parent after coalesce");
    }

    [Fact]
    public void Fill_Quick_RangeOfSectorsAndErrors()
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "fb.vhd", "-s", "16");
        Ok(dir.Path, "fill", "-n", "fb.vhd", "-b", "-f", "0", "-t", "4096");
        Assert.Equal("block: 0: offset: 3584\nblock: 1: offset: 2104832\nblock: 2: offset: not allocated\n",
            Ok(dir.Path, "read", "-n", "fb.vhd", "-b", "0") + Ok(dir.Path, "read", "-n", "fb.vhd", "-b", "1") + Ok(dir.Path, "read", "-n", "fb.vhd", "-b", "2"));
        AssertValid(dir.Path, "fb.vhd", "-b");
        AssertQemuSees(dir.File("fb.vhd"), new byte[Size]);

        ProcessResult r = Run(dir.Path, "fill", "-n", "fb.vhd", "-f", "0");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("-f/-t can only be used with -b\noptions: <-n name> [-h help] [-b initialise", r.StandardOutput, StringComparison.Ordinal);
        r = Run(dir.Path, "fill", "-n", "nonexistent.vhd");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error opening nonexistent.vhd: -2\n", r.StandardOutput);
    }

    [Fact]
    public void Modify_SizeParentAndZero()
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "m.vhd", "-s", "16");
        Ok(dir.Path, "modify", "-n", "m.vhd", "-s", "8388608");
        Assert.Equal(8388608, new FileInfo(dir.File("m.vhd")).Length);
        Assert.Equal("16\n3584\n", Ok(dir.Path, "query", "-n", "m.vhd", "-v", "-s"));
        AssertValid(dir.Path, "m.vhd");

        Ok(dir.Path, "create", "-n", "lone.vhd", "-s", "8");
        Ok(dir.Path, "create", "-n", "base.vhd", "-s", "8");
        Ok(dir.Path, "snapshot", "-n", "mc.vhd", "-p", "lone.vhd", "-e");
        Ok(dir.Path, "modify", "-n", "mc.vhd", "-p", "base.vhd");
        Assert.Equal(dir.File("base.vhd") + "\n", Ok(dir.Path, "query", "-n", "mc.vhd", "-p"));
        AssertValid(dir.Path, "mc.vhd", "-p");

        string sha = Sha256(dir.File("mc.vhd"));
        ProcessResult r = Run(dir.Path, "modify", "-n", "mc.vhd", "-p", "nonexistent.vhd");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("failed to set parent to 'nonexistent.vhd': -2\n", r.StandardOutput);
        Assert.Equal(sha, Sha256(dir.File("mc.vhd")));

        using (IBlockImage image = Open(dir.File("m.vhd")))
        {
            Write(image, MiB, Pattern(8192, 3));
        }

        Ok(dir.Path, "modify", "-n", "m.vhd", "-z");
        AssertValid(dir.Path, "m.vhd", "-b");
        Assert.Equal("0\n", Ok(dir.Path, "query", "-n", "m.vhd", "-a"));
        AssertQemuSees(dir.File("m.vhd"), new byte[Size]);

        r = Run(dir.Path, "modify", "-n", "nonexistent.vhd", "-s", "1");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error opening nonexistent.vhd: -2\n", r.StandardOutput);
        r = Run(dir.Path, "modify", "-n", "m.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("*** Dangerous operations, use with care ***\n", r.StandardOutput, StringComparison.Ordinal);
    }
}
