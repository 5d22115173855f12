using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>vhd-util read's options against the layout of reference-transcript.md 5 (g.vhd: block 1 full, block 5 sectors 1..137).</summary>
public sealed class ReadTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly byte[] _block1 = Pattern(2 * MiB, 51);
    private readonly byte[] _block5 = Pattern(137 * 512, 52);

    public ReadTests()
    {
        Ok(_dir.Path, "create", "-n", "g.vhd", "-s", "64");
        using IBlockImage image = Open(_dir.File("g.vhd"));
        Write(image, 2 * MiB, _block1);
        Write(image, (20481L * 512), _block5);
    }

    public void Dispose() => _dir.Dispose();

    private string Read(params string[] args) => Ok(_dir.Path, ["read", "-n", "g.vhd", .. args]);

    private byte[] ReadBytes(params string[] args)
    {
        // Raw output goes through a shell redirection to a file, so the bytes are compared exactly as the tool wrote them.
        string output = _dir.File("out.bin");
        ProcessResult r = ExternalTool.Run("/bin/sh", ["-c", "cd \"$1\" && shift && exec \"$@\" > out.bin", "sh", _dir.Path, Binary, "read", "-n", "g.vhd", .. args], null, TimeSpan.FromMinutes(5));
        Assert.True(r.ExitCode == 0, $"read {string.Join(' ', args)}: exit {r.ExitCode}\n{r.StandardError}");
        return File.ReadAllBytes(output);
    }

    [Fact]
    public void Read_BatAndTranslate_TranscriptLines()
    {
        Assert.Equal("block: 1: offset: 3584\n", Read("-b", "1"));
        Assert.Equal("block: 0: offset: not allocated\n", Read("-b", "0"));
        Assert.Equal("block: 5: offset: 2104832\n", Read("-b", "5"));
        Assert.Equal("block: 0: offset: not allocated\nblock: 1: offset: 3584\nblock: 2: offset: not allocated\n", Read("-b", "0", "-c", "3"));
        Assert.Equal("block: 0x5: offset: 0x201e00\n", Read("-b", "5", "-x"));
        Assert.Equal("logical sector 4096: block number: 1, sector offset: 0, file offset: 4096\n", Read("-t", "4096"));
        Assert.Equal("logical sector 0: block number: 0, sector offset: 0, file offset: not allocated\n", Read("-t", "0"));
        Assert.Equal("block 5: sec: 2: 1\n", Read("-i", "20482"));
        Assert.Equal("block 5: sec: 1: 1\n", Read("-i", "20481"));
        Assert.Equal("block 5: sec: 0: 0\nblock 5: sec: 1: 1\n", Read("-i", "20480", "-c", "2"));
        Assert.Equal("4096 4096\n20481 137\n", Read("-e", "0", "-c", "131072"));

        ProcessResult r = Run(_dir.Path, "read", "-n", "g.vhd", "-b", "32");
        Assert.Equal((22, "block 32 past end of bat (32)\n"), (r.ExitCode, r.StandardOutput));
    }

    [Fact]
    public void Read_RawDumps_TranscriptBytes()
    {
        Assert.Equal(new byte[] { 0x44, 0, 0, 0 }, ReadBytes("-B"));

        byte[] batmap = ReadBytes("-a");
        Assert.Equal(512, batmap.Length);
        Assert.Equal(0x40, batmap[0]);
        Assert.True(batmap.AsSpan(1).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal("batmap for block 1: 1\nbatmap for block 2: 0\n", Run(_dir.Path, "read", "-n", "g.vhd", "-j", "1", "-c", "2").StandardError);

        byte[] bitmap = ReadBytes("-m", "5");
        Assert.Equal(512, bitmap.Length);
        Assert.Equal(new byte[] { 0x7f, 0xff }, bitmap[..2]);
        Assert.Equal(new byte[] { 0xff, 0xc0, 0x00 }, bitmap[16..19]);
        Assert.True(bitmap.AsSpan(19).IndexOfAnyExcept((byte)0) < 0);

        Assert.Equal(_block5[512..1024], ReadBytes("-r", "20482", "-c", "1"));
        Assert.Equal(_block5[512..1024], ReadBytes("-r", "20482", "-c", "1", "-x"));
        Assert.Equal(_block5[..512], ReadBytes("-R", "10486272", "-c", "512"));
        Assert.Equal(_block1, ReadBytes("-r", "4096", "-c", "4096"));

        ProcessResult r = Run(_dir.Path, "read", "-n", "g.vhd", "-R", "10486272", "-c", "32");
        Assert.Equal((22, string.Empty), (r.ExitCode, r.StandardOutput));

        byte[] data = ReadBytes("-d", "5", "-c", "1");
        Assert.Equal(2 * MiB, data.Length);
        Assert.Equal(_block5, data[512..(512 + _block5.Length)]);
        Assert.Equal(_block1, ReadBytes("-d", "1"));
    }

    [Fact]
    public void Read_HeadersInHex_TranscriptFields()
    {
        string text = Read("-p", "-x");
        Assert.Contains("Data offset         : 0x200\n", text, StringComparison.Ordinal);
        Assert.Contains("Current disk size   : 0x40 MB (0x4000000 Bytes)\n", text, StringComparison.Ordinal);
        Assert.Contains("Geometry            : Cyl: 0x3c3, Hds: 0x8, Sctrs: 0x11\n                    : = 0x3f MB (0x3ff3000 Bytes)\n", text, StringComparison.Ordinal);
        Assert.Contains("Hidden              : 0\n", text, StringComparison.Ordinal);
        Assert.Contains("Data offset (unusd) : 0xffffffffffffffff\nTable offset        : 0x600\nHeader version      : 0x00010000\nMax BAT size        : 0x20\nBlock size          : 0x200000 (0x2 MB)\n", text, StringComparison.Ordinal);
        Assert.Contains("Batmap offset       : 0xa00\nBatmap size (secs)  : 0x1\nBatmap version      : 0x00010002\n", text, StringComparison.Ordinal);
        Assert.Contains("Table offset        : 1536\n", Read("-p"), StringComparison.Ordinal);
    }

    [Fact]
    public void Read_FixedVhd_FailsToGetBat()
    {
        Ok(_dir.Path, "create", "-n", "gr.vhd", "-s", "4", "-r");
        ProcessResult r = Run(_dir.Path, "read", "-n", "gr.vhd", "-p");
        Assert.Equal((22, "Failed to get bat for gr.vhd: -22\n"), (r.ExitCode, r.StandardOutput));
    }
}
