using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>"vhd-util resize" (-j journaled, -f fast) and "revert", including kills at every step (reference-transcript.md 10.5, 10.8).</summary>
public sealed class ResizeTests
{
    private const long Size = 8L * MiB;
    private const long NewSizeMb = 600; // 300 BAT entries: the BAT needs 3 sectors, so the first blocks must move

    /// <summary>A full 8 MiB dynamic VHD (every block allocated, one partial) and its content.</summary>
    private static byte[] MakeImage(string path, int seed)
    {
        byte[] shadow = new byte[Size];
        VhdCreator.CreateDynamic(path, Size);
        using IBlockImage image = Open(path);
        Write(image, 0, Pattern(2 * MiB, seed), shadow);
        Write(image, 2 * MiB, Pattern(4096, seed + 1), shadow);
        Write(image, 4 * MiB + 512, Pattern(MiB, seed + 2), shadow);
        Write(image, Size - 1024, Pattern(1024, seed + 3), shadow);
        return shadow;
    }

    private static byte[] Grown(byte[] shadow, long newSizeBytes)
    {
        byte[] grown = new byte[newSizeBytes];
        shadow.CopyTo(grown, 0);
        return grown;
    }

    [Fact]
    public void Resize_Journaled_MovesBlocksKeepsDataAndDeletesTheJournal()
    {
        using var dir = new TempDirectory();
        byte[] shadow = MakeImage(dir.File("r.vhd"), 1);
        ProcessResult r = Run(dir.Path, "resize", "-n", "r.vhd", "-s", NewSizeMb.ToString(), "-j", "r.jnl");
        Assert.True(r.ExitCode == 0, r.StandardOutput + r.StandardError);
        Assert.Equal(string.Empty, r.StandardOutput);
        Assert.False(File.Exists(dir.File("r.jnl")));
        Assert.Equal($"{NewSizeMb}\n", Ok(dir.Path, "query", "-n", "r.vhd", "-v"));
        AssertValid(dir.Path, "r.vhd", "-b");
        byte[] expected = Grown(shadow, NewSizeMb * MiB);
        AssertSameContent(expected, ReadAll(dir.File("r.vhd")), "after resize");
        AssertQemuCheckClean(dir.File("r.vhd"));
        AssertQemuSees(dir.File("r.vhd"), expected);

        // The grown image takes new blocks past the old end, and stays valid.
        using (IBlockImage image = Open(dir.File("r.vhd")))
        {
            Write(image, 500L * MiB, Pattern(8192, 9), expected);
        }

        AssertValid(dir.Path, "r.vhd", "-b");
        AssertQemuSees(dir.File("r.vhd"), expected);
    }

    [Fact]
    public void Resize_DifferencingChild_LocatorsMoveAndTheChainStillResolves()
    {
        using var dir = new TempDirectory();
        byte[] shadow = MakeImage(dir.File("p.vhd"), 3);
        VhdCreator.CreateDifferencing(dir.File("c.vhd"), dir.File("p.vhd"));
        using (IBlockImage c = Open(dir.File("c.vhd")))
        {
            Write(c, MiB, Pattern(8192, 4), shadow);
        }

        Ok(dir.Path, "resize", "-n", "c.vhd", "-s", NewSizeMb.ToString(), "-j", "c.jnl");
        AssertValid(dir.Path, "c.vhd", "-p");
        Assert.Equal(dir.File("p.vhd") + "\n", Ok(dir.Path, "query", "-n", "c.vhd", "-p"));
        AssertSameContent(Grown(shadow, NewSizeMb * MiB), ReadAll(dir.File("c.vhd")), "child after resize");
    }

    [Theory]
    [InlineData("journaled")]
    [InlineData("poisoned")]
    [InlineData("moving")]
    [InlineData("moved")]
    [InlineData("metadata")]
    [InlineData("committed")]
    public void Resize_KilledAtAStep_RevertRestoresTheOriginal(string crashPoint)
    {
        using var dir = new TempDirectory();
        byte[] shadow = MakeImage(dir.File("r.vhd"), 5);
        var env = new Dictionary<string, string> { ["TAPDISK_VHD_UTIL_CRASH_AT"] = crashPoint };
        ProcessResult r = Run(dir.Path, env, "resize", "-n", "r.vhd", "-s", NewSizeMb.ToString(), "-j", "r.jnl");
        Assert.Equal(137, r.ExitCode); // killed by SIGKILL at the crash point
        Assert.True(File.Exists(dir.File("r.jnl")), "the journal must outlive a crash");

        if (crashPoint != "journaled")
        {
            // Between poisoning and commit the VHD is disabled: nothing may take it for a valid image.
            ProcessResult check = Run(dir.Path, "check", "-n", "r.vhd");
            if (crashPoint != "committed")
            {
                Assert.NotEqual(0, check.ExitCode);
            }
        }

        Assert.Equal(string.Empty, Ok(dir.Path, "revert", "-n", "r.vhd", "-j", "r.jnl"));
        Assert.False(File.Exists(dir.File("r.jnl")));
        AssertValid(dir.Path, "r.vhd", "-b");
        Assert.Equal("8\n", Ok(dir.Path, "query", "-n", "r.vhd", "-v"));
        AssertSameContent(shadow, ReadAll(dir.File("r.vhd")), "after revert");
        AssertQemuSees(dir.File("r.vhd"), shadow);

        // And the resize then succeeds from the restored image.
        Ok(dir.Path, "resize", "-n", "r.vhd", "-s", NewSizeMb.ToString(), "-j", "r.jnl");
        AssertValid(dir.Path, "r.vhd", "-b");
        AssertQemuSees(dir.File("r.vhd"), Grown(shadow, NewSizeMb * MiB));
    }

    [Fact]
    public void Resize_InProcessCheckpoints_RunInOrder()
    {
        using var dir = new TempDirectory();
        MakeImage(dir.File("r.vhd"), 7);
        var seen = new List<string>();
        VhdResizer.ResizeJournaled(dir.File("r.vhd"), NewSizeMb * MiB, dir.File("r.jnl"), seen.Add);

        // Only block 0 lies under the larger BAT and batmap, so exactly one block moves.
        Assert.Equal(["journaled", "poisoned", "moving", "moved", "metadata", "committed"], seen);
    }

    [Fact]
    public void Resize_ReferenceErrorsAndFastMode()
    {
        using var dir = new TempDirectory();
        VhdCreator.CreateDynamic(dir.File("r.vhd"), Size);
        string sha = Sha256(dir.File("r.vhd"));

        ProcessResult r = Run(dir.Path, "resize", "-n", "r.vhd", "-s", "4", "-j", "r.jnl");
        Assert.Equal(38, r.ExitCode);
        Assert.Equal("dynamic shrink not fully implemented\nresize failed: -38\n", r.StandardOutput);
        Assert.False(File.Exists(dir.File("r.jnl")));

        r = Run(dir.Path, "resize", "-n", "r.vhd", "-s", "32");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("options: <-n name> <-s size (in MB)> (<-j journal>|<-f fast>) [-h help]\n\nThe resize operation", r.StandardOutput, StringComparison.Ordinal);

        r = Run(dir.Path, "resize", "-n", "r.vhd", "-s", "32", "-f");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal(string.Empty, r.StandardOutput + r.StandardError);
        Assert.Equal(sha, Sha256(dir.File("r.vhd")));

        r = Run(dir.Path, "resize", "-n", "nonexistent.vhd", "-s", "16", "-j", "x.jnl");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error opening nonexistent.vhd: -2\n", r.StandardOutput);

        VhdCreator.CreateDynamic(dir.File("rs.vhd"), Size, 64L * MiB);
        Ok(dir.Path, "resize", "-n", "rs.vhd", "-s", "32", "-f");
        Assert.Equal("32\n3584\n", Ok(dir.Path, "query", "-n", "rs.vhd", "-v", "-s"));
        AssertValid(dir.Path, "rs.vhd");
        Assert.Equal(22, Run(dir.Path, "resize", "-n", "rs.vhd", "-s", "128", "-f").ExitCode);

        r = Run(dir.Path, "revert", "-n", "r.vhd", "-j", "nonexistent.jnl");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("opening journal failed: -2\n", r.StandardOutput);
        r = Run(dir.Path, "revert", "-n", "r.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("options: <-n name> <-j journal> [-h help]\n", r.StandardOutput);
    }

    [Fact]
    public void Resize_CorruptImage_RefusedAndUntouched()
    {
        using var dir = new TempDirectory();
        MakeImage(dir.File("r.vhd"), 8);
        byte[] bytes = File.ReadAllBytes(dir.File("r.vhd"));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(1536 + 8), System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(1536)));
        File.WriteAllBytes(dir.File("bad.vhd"), bytes);
        string sha = Sha256(dir.File("bad.vhd"));
        ProcessResult r = Run(dir.Path, "resize", "-n", "bad.vhd", "-s", NewSizeMb.ToString(), "-j", "bad.jnl");
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("overlaps", r.StandardError, StringComparison.Ordinal);
        Assert.Equal(sha, Sha256(dir.File("bad.vhd")));
        Assert.False(File.Exists(dir.File("bad.jnl")));
    }
}
