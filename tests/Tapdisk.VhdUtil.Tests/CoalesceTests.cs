using System.Diagnostics;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>"vhd-util coalesce": content, output format, errors and kill -9 safety (reference-transcript.md 10.4).</summary>
public sealed class CoalesceTests
{
    private const long Size = 16L * MiB;

    /// <summary>A parent with some data and a child with partial, straddling and whole-block writes; returns the chain's content.</summary>
    private static byte[] MakeChain(string parent, string child, int seed, bool rawParent = false)
    {
        byte[] shadow = new byte[Size];
        if (rawParent)
        {
            byte[] p = Pattern((int)Size, seed);
            Array.Clear(p, 6 * MiB, 4 * MiB);
            File.WriteAllBytes(parent, p);
            p.CopyTo(shadow, 0);
        }
        else
        {
            VhdCreator.CreateDynamic(parent, Size);
            using IBlockImage p = Open(parent);
            Write(p, MiB, Pattern(64 * 1024, seed), shadow);
            Write(p, 4 * MiB, Pattern(2 * MiB, seed + 1), shadow);
        }

        VhdCreator.CreateDifferencing(child, parent, parentIsRaw: rawParent);
        using (IBlockImage c = Open(child))
        {
            Write(c, MiB + 32768, Pattern(65536, seed + 2), shadow);       // over the parent's data
            Write(c, (5 * MiB) - 512, Pattern(2048, seed + 3), shadow);    // straddles two blocks
            Write(c, 8 * MiB, Pattern(2 * MiB, seed + 4), shadow);         // a whole block (batmap-full)
            Write(c, 12 * MiB + 4096, Pattern(512, seed + 5), shadow);     // a block the parent never had
            Write(c, Size - 512, Pattern(512, seed + 6), shadow);          // last sector
        }

        AssertSameContent(shadow, ReadAll(child), "chain before coalesce");
        return shadow;
    }

    [Fact]
    public void Coalesce_IntoDynamicParent_ParentHoldsTheChainsContent()
    {
        using var dir = new TempDirectory();
        byte[] expected = MakeChain(dir.File("p.vhd"), dir.File("c.vhd"), 10);
        string childSha = Sha256(dir.File("c.vhd"));

        ProcessResult r = Run(dir.Path, "coalesce", "-n", "c.vhd", "-p");
        Assert.Equal(0, r.ExitCode);

        // 8 BAT entries: "\r  0.00%", one step per entry, "\n", then the count with no trailing newline.
        string steps = string.Concat(Enumerable.Range(0, 9).Select(i => $"\r{i * 12.5,6:F2}%"));
        long sectors = (65536 + 2048 + (2 * MiB) + 512 + 512) / 512;
        Assert.Equal($"{steps}\nCoalesced {sectors} sectors", r.StandardOutput);

        Assert.Equal(childSha, Sha256(dir.File("c.vhd")));
        AssertSameContent(expected, ReadAll(dir.File("p.vhd")), "parent after coalesce");
        AssertSameContent(expected, ReadAll(dir.File("c.vhd")), "chain after coalesce");
        AssertValid(dir.Path, "c.vhd", "-p", "-b");
        AssertValid(dir.Path, "p.vhd", "-b");
        AssertQemuCheckClean(dir.File("p.vhd"));
        AssertQemuSees(dir.File("p.vhd"), expected);
    }

    [Fact]
    public void Coalesce_WithoutProgressFlag_PrintsOnlyTheCount()
    {
        using var dir = new TempDirectory();
        byte[] expected = MakeChain(dir.File("p.vhd"), dir.File("c.vhd"), 20);
        ProcessResult r = Run(dir.Path, "coalesce", "-n", "c.vhd");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal($"Coalesced {(65536 + 2048 + (2 * MiB) + 1024) / 512} sectors", r.StandardOutput);
        Assert.Equal(string.Empty, r.StandardError); // no progress bar when stderr is not a terminal
        AssertSameContent(expected, ReadAll(dir.File("p.vhd")), "parent after coalesce");
    }

    [Fact]
    public void Coalesce_IntoRawParent_WritesTheRawFile()
    {
        using var dir = new TempDirectory();
        byte[] expected = MakeChain(dir.File("base.raw"), dir.File("c.vhd"), 30, rawParent: true);
        Ok(dir.Path, "coalesce", "-n", "c.vhd");
        AssertSameContent(expected, File.ReadAllBytes(dir.File("base.raw")), "raw parent after coalesce");
    }

    [Fact]
    public void Coalesce_InProcess_ReportsEveryBatEntry()
    {
        using var dir = new TempDirectory();
        byte[] expected = MakeChain(dir.File("p.vhd"), dir.File("c.vhd"), 40);
        var steps = new List<(int, int)>();
        long sectors = VhdCoalescer.Coalesce(dir.File("c.vhd"), (done, total) => steps.Add((done, total)));
        Assert.Equal((65536 + 2048 + (2 * MiB) + 1024) / 512, sectors);
        Assert.Equal(Enumerable.Range(0, 9).Select(i => (i, 8)), steps);
        AssertSameContent(expected, ReadAll(dir.File("p.vhd")), "parent after coalesce");
    }

    [Fact]
    public void Coalesce_BadInput_ReferenceMessagesAndNothingWritten()
    {
        using var dir = new TempDirectory();
        VhdCreator.CreateDynamic(dir.File("base.vhd"), Size);
        string sha = Sha256(dir.File("base.vhd"));
        ProcessResult r = Run(dir.Path, "coalesce", "-n", "base.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("coalescing of non-differencing disks is not supported\nerror coalescing: -22\n", r.StandardOutput);
        Assert.Equal(sha, Sha256(dir.File("base.vhd")));

        r = Run(dir.Path, "coalesce", "-n", "nonexistent.vhd");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("error opening nonexistent.vhd: -2\nerror coalescing: -2\n", r.StandardOutput);

        r = Run(dir.Path, "coalesce");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("options: <-n name> [-s sparse] [-p progress] [-h help]\n", r.StandardOutput);

        // A child whose BAT points past its end, and a parent whose UUID no longer matches: refused, both untouched.
        MakeChain(dir.File("p.vhd"), dir.File("c.vhd"), 50);
        string childSha = Sha256(dir.File("c.vhd")), parentSha = Sha256(dir.File("p.vhd"));
        byte[] child = File.ReadAllBytes(dir.File("c.vhd"));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(child.AsSpan(1536 + 4), 0x00100000);
        File.WriteAllBytes(dir.File("bad.vhd"), child);
        r = Run(dir.Path, "coalesce", "-n", "bad.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("BAT entry 1", r.StandardError, StringComparison.Ordinal);
        Assert.Equal(parentSha, Sha256(dir.File("p.vhd")));

        VhdCreator.CreateDynamic(dir.File("other.vhd"), Size);
        File.Move(dir.File("p.vhd"), dir.File("p.orig"));
        File.Copy(dir.File("other.vhd"), dir.File("p.vhd"));
        string otherSha = Sha256(dir.File("p.vhd"));
        r = Run(dir.Path, "coalesce", "-n", "c.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("parent UUID", r.StandardError, StringComparison.Ordinal);
        Assert.Equal(otherSha, Sha256(dir.File("p.vhd")));
        Assert.Equal(childSha, Sha256(dir.File("c.vhd")));
    }

    [Fact]
    public void Coalesce_KilledAtRandomMoments_ChainStaysValidAndRerunCompletes()
    {
        using var dir = new TempDirectory();
        var random = new Random(4242);
        int killedMidway = 0;
        TimeSpan full = TimeSpan.Zero;
        // Eight rounds, and more (up to 24) while none was interrupted: a warm process runs faster than the
        // calibration did, so every moment of a round can fall after its run.
        for (int round = -1; round < 8 || (killedMidway == 0 && round < 24); round++)
        {
            string parent = dir.File($"p{round}.vhd"), child = dir.File($"c{round}.vhd");
            byte[] expected = MakeChain(parent, child, 100 + round);
            using (IBlockImage c = Open(child))
            {
                // More allocated blocks make the copy long enough to be interrupted.
                for (int b = 0; b < 8; b += 2)
                {
                    Write(c, (long)b * 2 * MiB, Pattern(MiB, 200 + b), expected);
                }
            }

            var psi = new ProcessStartInfo(Binary) { WorkingDirectory = dir.Path, RedirectStandardOutput = true, UseShellExecute = false };
            psi.ArgumentList.Add("coalesce");
            psi.ArgumentList.Add("-n");
            psi.ArgumentList.Add(Path.GetFileName(child));
            using (Process p = Process.Start(psi)!)
            {
                if (round < 0)
                {
                    // Calibration: one uninterrupted run, so the kill moments fall inside a run on any machine speed.
                    var watch = Stopwatch.StartNew();
                    p.WaitForExit();
                    full = watch.Elapsed;
                    Assert.Equal(0, p.ExitCode);
                    continue;
                }

                TimeSpan moment = full * random.NextDouble();
                Thread.Sleep(moment);
                if (!p.HasExited)
                {
                    p.Kill(); // SIGKILL
                    killedMidway++;
                }
                else
                {
                    // This run took at most the moment, faster than the calibration: later moments fall within it.
                    full = moment;
                }

                p.WaitForExit();
            }

            // Whatever the moment, the parent is a valid VHD and the chain reads exactly as before.
            AssertValid(dir.Path, Path.GetFileName(parent));
            AssertValid(dir.Path, Path.GetFileName(child), "-p");
            AssertSameContent(expected, ReadAll(child), $"chain after a kill in round {round}");

            Ok(dir.Path, "coalesce", "-n", Path.GetFileName(child));
            AssertSameContent(expected, ReadAll(parent), $"parent after the rerun in round {round}");
        }

        Assert.True(killedMidway > 0, "no run was interrupted: the kill moments are all after completion");
    }
}
