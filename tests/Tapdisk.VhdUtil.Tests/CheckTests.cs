using System.Buffers.Binary;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>"vhd-util check" on a corpus of corrupt images: the reference's messages and exit codes (reference-transcript.md 6).</summary>
public sealed class CheckTests
{
    private const long Size = 16L * MiB;
    private const int Bat = 1536;

    /// <summary>Block 1 allocated first (BAT[1] = 7) and full; blocks 0, 5 and 7 partial; closed cleanly.</summary>
    private static void MakeGood(string path)
    {
        VhdCreator.CreateDynamic(path, Size);
        using IBlockImage image = Open(path);
        Write(image, 2 * MiB, Pattern(2 * MiB, 1));
        Write(image, 0, Pattern(4096, 2));
        Write(image, 10 * MiB + 8192, Pattern(8192, 3));
        Write(image, Size - 4096, Pattern(4096, 4));
    }

    private static void Mutate(string path, Action<byte[]> change)
    {
        byte[] bytes = File.ReadAllBytes(path);
        change(bytes);
        File.WriteAllBytes(path, bytes);
    }

    private static uint BatEntry(byte[] b, int block) => BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(Bat + (block * 4)));

    private static void SetBatEntry(byte[] b, int block, uint value) => BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(Bat + (block * 4)), value);

    public static TheoryData<string, string, int> Corpus => new()
    {
        { "primary-checksum", "primary footer invalid: invalid checksum", 22 },
        { "backup-checksum", "backup footer invalid: invalid checksum", 22 },
        { "both-checksums", "primary footer invalid: invalid checksum", 22 },
        { "truncated-footer", "primary footer invalid: invalid cookie", 22 },
        { "truncated-mid-block", "primary footer invalid: invalid cookie", 22 },
        { "bat-past-eof", "block 1 (offset 0x100000) clobbers footer", 22 },
        { "bat-overlap", "block 1 (offset 0x7) clobbers block 5 (offset 0x7)", 22 },
        { "bat-in-metadata", "block 1 (offset 0x2) clobbers headers", 22 },
        { "header-checksum", "header is invalid: invalid checksum", 22 },
        { "header-cookie", "header is invalid: invalid cookie", 22 },
        { "footer-cookies", "primary footer invalid: invalid cookie", 22 },
        { "batmap-checksum", "error calculating end of metadata: -22", 22 },
        { "batmap-cookie", "error calculating end of metadata: -22", 22 },
        { "batmap-bit-partial", "error calculating end of metadata: -22", 22 },
        { "footer-features", "primary footer invalid: invalid 'reserved' feature", 22 },
        { "footer-type", "primary footer invalid: invalid type", 22 },
        { "footer-null-uuid", "primary footer invalid: invalid uuid", 22 },
        { "max-bat-too-small", "header is invalid: max bat size too small", 22 },
        { "zeros", "error reading primary footer: -22", 22 },
        { "zeros-aligned", "primary footer invalid: invalid cookie", 22 },
        { "tiny", "error calculating end of file: -22", 22 },
    };

    /// <summary>Builds one corrupt variant of the good image.</summary>
    private static void MakeCorrupt(string path, string kind)
    {
        MakeGood(path);
        long length = new FileInfo(path).Length;
        switch (kind)
        {
            case "primary-checksum": Mutate(path, b => b[b.Length - 512 + 64] ^= 0x55); break;
            case "backup-checksum": Mutate(path, b => b[64] ^= 0x55); break;
            case "both-checksums": Mutate(path, b => { b[64] ^= 0x55; b[b.Length - 512 + 64] ^= 0x55; }); break;
            case "truncated-footer": File.WriteAllBytes(path, File.ReadAllBytes(path)[..^512]); break;
            case "truncated-mid-block": File.WriteAllBytes(path, File.ReadAllBytes(path)[..(int)(length - 512 - MiB)]); break;
            case "bat-past-eof": Mutate(path, b => SetBatEntry(b, 1, 0x00100000)); break;
            case "bat-overlap": Mutate(path, b => SetBatEntry(b, 5, BatEntry(b, 1))); break;
            case "bat-in-metadata": Mutate(path, b => SetBatEntry(b, 1, 2)); break;
            case "header-checksum": Mutate(path, b => b[512 + 36] ^= 0x55); break;
            case "header-cookie": Mutate(path, b => b[512] = (byte)'X'); break;
            case "footer-cookies": Mutate(path, b => { b[0] = (byte)'X'; b[b.Length - 512] = (byte)'X'; }); break;
            case "batmap-checksum": Mutate(path, b => b[2048 + 24] ^= 0x55); break;
            case "batmap-cookie": Mutate(path, b => b[2048] = (byte)'X'); break;
            case "batmap-bit-partial": Mutate(path, b => b[2560] |= 0x01); break; // block 7's bit; its block is partial
            case "footer-features": RewriteFooters(path, f => f.Features = 3 | 8); break;
            case "footer-type": RewriteFooters(path, f => f.DiskTypeValue = 5); break;
            case "footer-null-uuid": RewriteFooters(path, f => f.UniqueId = new byte[16]); break;
            case "max-bat-too-small": RewriteHeader(path, h => h.MaxTableEntries = 4); break;
            case "zeros": File.WriteAllBytes(path, new byte[1000]); break;
            case "zeros-aligned": File.WriteAllBytes(path, new byte[1024]); break;
            case "tiny": File.WriteAllBytes(path, new byte[100]); break;
            default: throw new ArgumentException(kind);
        }
    }

    private static void RewriteFooters(string path, Action<VhdFooter> change) => Mutate(path, b =>
    {
        VhdFooter f = VhdFooter.Read(b.AsSpan(0, 512));
        change(f);
        f.UpdateChecksum();
        f.Write(b.AsSpan(0, 512));
        f.Write(b.AsSpan(b.Length - 512));
    });

    private static void RewriteHeader(string path, Action<VhdDynamicHeader> change) => Mutate(path, b =>
    {
        VhdDynamicHeader h = VhdDynamicHeader.Read(b.AsSpan(512, 1024));
        change(h);
        h.UpdateChecksum();
        h.Write(b.AsSpan(512, 1024));
    });

    [Theory]
    [MemberData(nameof(Corpus))]
    public void Check_CorruptImage_ReferenceMessageExitCodeAndDump(string kind, string message, int exitCode)
    {
        using var dir = new TempDirectory();
        string name = kind + ".vhd";
        MakeCorrupt(dir.File(name), kind);
        string sha = Sha256(dir.File(name));

        ProcessResult r = Run(dir.Path, "check", "-n", name);
        Assert.True(r.ExitCode == exitCode, $"exit {r.ExitCode}\n{r.StandardOutput}{r.StandardError}");
        string[] lines = r.StandardOutput.Split('\n');
        Assert.Equal(message, lines[0]);
        Assert.Equal($"{name} appears invalid; dumping metadata", lines[1]);
        if (kind is "both-checksums" or "header-checksum" or "header-cookie" or "footer-cookies")
        {
            Assert.Equal($"Failed to open {name}: -22", lines[2]);
            Assert.Contains("(Bad!)", r.StandardOutput, StringComparison.Ordinal);
        }
        else if (kind.StartsWith("batmap", StringComparison.Ordinal))
        {
            Assert.EndsWith("\nfailed to get batmap header\n", r.StandardOutput, StringComparison.Ordinal);
        }
        else if (kind is not ("zeros" or "zeros-aligned" or "tiny"))
        {
            Assert.Contains("VHD Footer Summary:", r.StandardOutput, StringComparison.Ordinal);
        }

        // Every command on the corrupt image fails or only reads it: the file is never changed.
        foreach (string[] args in new[]
        {
            new[] { "check", "-n", name, "-p", "-b", "-s" },
            ["query", "-n", name, "-v", "-s", "-a", "-f", "-m"],
            ["read", "-n", name, "-p"],
            ["scan", name],
            ["coalesce", "-n", name],
            ["resize", "-n", name, "-s", "64", "-j", "j.jnl"],
            ["resize", "-n", name, "-s", "32", "-f"],
            ["set", "-n", name, "-f", "hidden", "-v", "1"],
            ["set", "-n", name, "-f", "marker", "-v", "1"],
        })
        {
            ProcessResult other = Run(dir.Path, args);
            Assert.True(sha == Sha256(dir.File(name)), $"vhd-util {string.Join(' ', args)} changed the corrupt image (exit {other.ExitCode})");
            if (args[0] is "resize" or "set" or "coalesce")
            {
                Assert.NotEqual(0, other.ExitCode);
            }
        }

        Assert.False(File.Exists(dir.File("j.jnl")));
    }

    [Fact]
    public void Check_ReferenceFlags_IgnorePrimaryAndSkipOverlap()
    {
        using var dir = new TempDirectory();
        foreach (string kind in new[] { "primary-checksum", "truncated-footer", "bat-overlap" })
        {
            MakeCorrupt(dir.File(kind + ".vhd"), kind);
        }

        AssertValid(dir.Path, "primary-checksum.vhd", "-i");
        AssertValid(dir.Path, "truncated-footer.vhd", "-i");
        AssertValid(dir.Path, "bat-overlap.vhd", "-B");

        // -i on a file cut inside its last block: the block now runs past the end.
        MakeCorrupt(dir.File("cut.vhd"), "truncated-mid-block");
        byte[] b = File.ReadAllBytes(dir.File("cut.vhd"));
        int last = Enumerable.Range(0, 8).Where(i => BatEntry(b, i) != uint.MaxValue).MaxBy(i => BatEntry(b, i));
        ProcessResult r = Run(dir.Path, "check", "-n", "cut.vhd", "-i");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith($"block {last} (offset 0x{BatEntry(b, last):x}) clobbers footer\n", r.StandardOutput, StringComparison.Ordinal);

        r = Run(dir.Path, "check", "-n", "nonexistent.vhd");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("cannot stat nonexistent.vhd: 2\n", r.StandardOutput);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Check_CrashedImageReopenedReadWriteAndClosed_Valid(bool rewrite)
    {
        // The file as a kill during a read-write session leaves it: the last block ends it, no trailing footer.
        using var dir = new TempDirectory();
        string path = dir.File("crashed.vhd");
        MakeCorrupt(path, "truncated-footer");
        byte[] expected = ReadAll(path);
        Assert.StartsWith("primary footer invalid: invalid cookie\n", Run(dir.Path, "check", "-n", "crashed.vhd").StandardOutput, StringComparison.Ordinal);

        using (IBlockImage image = Open(path))
        {
            if (rewrite)
            {
                // Sectors already present (MakeGood wrote them): no bitmap or BAT write.
                Write(image, 2 * MiB, Pattern(2 * MiB, 5), expected);
                Write(image, 0, Pattern(4096, 6), expected);
            }
        }

        AssertValid(dir.Path, "crashed.vhd");
        AssertValid(dir.Path, "crashed.vhd", "-b");
        AssertSameContent(expected, ReadAll(path), "crashed image after the read-write session");
        AssertQemuSees(path, expected);
    }

    [Fact]
    public void Check_Stats_CountsAllocatedAndWrittenSectors()
    {
        using var dir = new TempDirectory();
        MakeGood(dir.File("g.vhd"));
        string written = $"0x{(2 * MiB + 4096 + 8192 + 4096) / 512:x}";
        double pct = (2.0 * MiB + 4096 + 8192 + 4096) * 100 / (4.0 * 2 * MiB);
        Assert.Equal($"g.vhd: secs allocated: 0x4000 secs written: {written} ({pct:F2}%)\n", Ok(dir.Path, "check", "-n", "g.vhd", "-s"));
    }

    [Fact]
    public void Check_BitmapFlag_DataUnderAClearBitIsReported()
    {
        using var dir = new TempDirectory();
        MakeGood(dir.File("g.vhd"));
        AssertValid(dir.Path, "g.vhd", "-b");
        byte[] b = File.ReadAllBytes(dir.File("g.vhd"));
        long block0Data = ((long)BatEntry(b, 0) + 1) * 512;
        b[block0Data + (100 * 512) + 7] = 0x42;
        File.WriteAllBytes(dir.File("g.vhd"), b);
        ProcessResult r = Run(dir.Path, "check", "-n", "g.vhd", "-b");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith($"block 0 (offset 0x{BatEntry(b, 0):x}): sector 100 holds data but its bitmap bit is clear\n", r.StandardOutput, StringComparison.Ordinal);
        AssertValid(dir.Path, "g.vhd"); // without -b the data area is not inspected
    }

    [Fact]
    public void Set_MarkerAndHidden_NoReferenceBatmapBug()
    {
        using var dir = new TempDirectory();
        MakeGood(dir.File("g.vhd"));
        Assert.Equal("batmap for block 1: 1\n", Run(dir.Path, "read", "-n", "g.vhd", "-j", "1").StandardError);
        Ok(dir.Path, "set", "-n", "g.vhd", "-f", "marker", "-v", "1");
        AssertValid(dir.Path, "g.vhd", "-b");
        Assert.Equal("marker: 1\n", Ok(dir.Path, "query", "-n", "g.vhd", "-m"));
        Assert.Equal("batmap for block 1: 1\n", Run(dir.Path, "read", "-n", "g.vhd", "-j", "1").StandardError);

        Ok(dir.Path, "set", "-n", "g.vhd", "-f", "hidden", "-v", "2");
        Assert.Equal("hidden: 2\n", Ok(dir.Path, "query", "-n", "g.vhd", "-f"));
        ProcessResult r = Run(dir.Path, "check", "-n", "g.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("primary footer invalid: invalid 'hidden' state\n", r.StandardOutput, StringComparison.Ordinal);
        Ok(dir.Path, "set", "-n", "g.vhd", "-f", "hidden", "-v", "1");
        AssertValid(dir.Path, "g.vhd");
        Assert.Equal("vhd=g.vhd capacity=16777216 size=" + new FileInfo(dir.File("g.vhd")).Length + " hidden=1 marker=1 keyhash= parent=none\n", Ok(dir.Path, "scan", "-M", "g.vhd"));
    }

    [Fact]
    public void Check_Parents_MissingReplacedAndBadLocator()
    {
        using var dir = new TempDirectory();
        MakeGood(dir.File("gp.vhd"));
        Ok(dir.Path, "snapshot", "-n", "gc.vhd", "-p", "gp.vhd");
        AssertValid(dir.Path, "gc.vhd", "-p");
        Assert.Equal($"gc.vhd is valid\n{dir.File("gp.vhd")} is valid\n", Ok(dir.Path, "check", "-n", "gc.vhd", "-p"));

        File.Move(dir.File("gp.vhd"), dir.File("gp.orig"));
        ProcessResult r = Run(dir.Path, "check", "-n", "gc.vhd", "-p");
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error resolving ./gp.vhd: -2\ngc.vhd appears invalid; dumping metadata\n", r.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("decoded name : ./gp.vhd", r.StandardOutput, StringComparison.Ordinal);
        r = Run(dir.Path, "query", "-n", "gc.vhd", "-d");
        Assert.Equal((2, "error checking chain depth: -2\n"), (r.ExitCode, r.StandardOutput));
        r = Run(dir.Path, "query", "-n", "gc.vhd", "-p");
        Assert.Equal((2, "query failed\n"), (r.ExitCode, r.StandardOutput));

        VhdCreator.CreateDynamic(dir.File("gp.vhd"), Size);
        r = Run(dir.Path, "check", "-n", "gc.vhd", "-p");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith($"invalid parent {dir.File("gp.vhd")}: invalid parent uuid\n", r.StandardOutput, StringComparison.Ordinal);
        Assert.Equal($"gc.vhd is valid\n{dir.File("gp.vhd")} is valid\n", Ok(dir.Path, "check", "-n", "gc.vhd", "-p", "-I"));

        File.Copy(dir.File("gp.orig"), dir.File("gp.vhd"), overwrite: true);
        Mutate(dir.File("gc.vhd"), b =>
        {
            VhdDynamicHeader h = VhdDynamicHeader.Read(b.AsSpan(512, 1024));
            h.Locators[0] = h.Locators[0] with { DataOffset = 1UL << 30 };
            h.UpdateChecksum();
            h.Write(b.AsSpan(512, 1024));
        });
        r = Run(dir.Path, "check", "-n", "gc.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("invalid parent locator 0 (offset 1073741824, space 512, length 15)\n", r.StandardOutput, StringComparison.Ordinal);
    }
}
