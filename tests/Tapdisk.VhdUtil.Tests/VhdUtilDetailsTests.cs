using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>
/// Smaller vhd-util outputs matched to blktap's: keyed "read -p", "check" on junk, read/set on a missing file, copy of
/// a differencing VHD, "query -d" over a raw parent. Where reference-transcript.md has no verbatim block for a case,
/// the expected text is derived from the transcript's neighbouring outputs and says so.
/// </summary>
public sealed class VhdUtilDetailsTests
{
    private const string KeyNonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    private const string KeyHash = "9240930a603b6b93408eef9111bf12df7f696b10dc158fad0346a541c11dfc91";

    [Fact]
    public void ReadHeaders_KeyedVhd_PrintsKeyhashAfterBatmapVersion()
    {
        // The nonce and hash are the transcript's k.vhd (7); the two lines sit between "Batmap version" and the
        // checksum, label padded to 20 like every other line, values in lower-case hex as "key -p" prints them.
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "k.vhd", "-s", "64");
        Ok(dir.Path, "key", "-s", "-n", "k.vhd", "-H", KeyHash, "-N", KeyNonce);

        ProcessResult r = Run(dir.Path, "read", "-n", "k.vhd", "-p");

        string batmap =
            "VHD Batmap Summary:\n-------------------\n" +
            "Batmap offset       : 2560\n" +
            "Batmap size (secs)  : 1\n" +
            "Batmap version      : 0x00010002\n" +
            $"Batmap keyhash nonce: {KeyNonce}\n" +
            $"Batmap keyhash hash : {KeyHash}\n" +
            "Checksum            : 0xffffffff|0xffffffff (Good!)\n\n";
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(string.Empty, r.StandardError);
        Assert.EndsWith("Checksum            : 0xfffff457|0xfffff457 (Good!)\n\n" + batmap, r.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_JunkFile_ReferenceDump()
    {
        // The transcript's junk.vhd (10.1: 1000 zero bytes). blktap reads the primary footer with O_DIRECT at
        // EOF-511, which is unaligned, so the read itself fails; then "read -p" cannot open the file and dumps the
        // zeroed footer (type 0 = "None", checksums as 0x%x) and, the type not being dynamic, an all-zero header.
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("junk.vhd"), new byte[1000]);

        const string Expected =
            "error reading primary footer: -22\n" +
            "junk.vhd appears invalid; dumping metadata\n" +
            "Failed to open junk.vhd: -22\n\n" +
            "junk.vhd appears invalid; dumping headers\n\n" +
            "VHD Footer Summary:\n-------------------\n" +
            "Cookie              : \n" +
            "Features            : (0x00000000) \n" +
            "File format version : Major: 0, Minor: 0\n" +
            "Data offset         : 0\n" +
            "Timestamp           : Sat Jan  1 00:00:00 2000\n" +
            "Creator Application : ''\n" +
            "Creator version     : Major: 0, Minor: 0\n" +
            "Creator OS          : Unknown!\n" +
            "Original disk size  : 0 MB (0 Bytes)\n" +
            "Current disk size   : 0 MB (0 Bytes)\n" +
            "Geometry            : Cyl: 0, Hds: 0, Sctrs: 0\n" +
            "                    : = 0 MB (0 Bytes)\n" +
            "Disk type           : None\n" +
            "Checksum            : 0x0|0xffffffff (Bad!)\n" +
            "UUID                : 00000000-0000-0000-0000-000000000000\n" +
            "Saved state         : No\n" +
            "Hidden              : 0\n\n" +
            "VHD Header Summary:\n-------------------\n" +
            "Cookie              : \n" +
            "Data offset (unusd) : 0\n" +
            "Table offset        : 0\n" +
            "Header version      : 0x00000000\n" +
            "Max BAT size        : 0\n" +
            "Block size          : 0 (0 MB)\n" +
            "Parent name         : \n" +
            "Parent UUID         : 00000000-0000-0000-0000-000000000000\n" +
            "Parent timestamp    : Sat Jan  1 00:00:00 2000\n" +
            "Checksum            : 0x0|0xffffffff (Bad!)\n\n";
        var utc = new Dictionary<string, string> { ["TZ"] = "UTC" };
        ProcessResult r = Run(dir.Path, utc, "check", "-n", "junk.vhd");
        Assert.Equal((22, Expected, string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
    }

    [Fact]
    public void ReadAndSet_MissingFile_MessagesOnStdout()
    {
        // "read" prints vhd_open's failure and then tries the raw header dump, which cannot open the file either;
        // "set" words it as query, modify and copy do in the transcript ("error opening X: -2", 4 and 10).
        using var dir = new TempDirectory();

        ProcessResult r = Run(dir.Path, "read", "-n", "missing.vhd", "-p");
        Assert.Equal((2, "Failed to open missing.vhd: -2\n\nmissing.vhd appears invalid; dumping headers\n\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));

        r = Run(dir.Path, "set", "-n", "missing.vhd", "-f", "hidden", "-v", "1");
        Assert.Equal((2, "error opening missing.vhd: -2\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
        Assert.False(File.Exists(dir.File("missing.vhd")));
    }

    [Fact]
    public void Copy_DifferencingWithReplacedParent_ErrorCreating()
    {
        // reference-transcript.md 10.7: "error creating copy2.vhd: -22", exit 22. blktap opens the source alone and
        // fails at creating a differencing copy; we flatten intact chains, but a chain whose parent UUID no longer
        // matches cannot be flattened, and then the reference's words are what the caller sees.
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "base.vhd", "-s", "16");
        Ok(dir.Path, "snapshot", "-n", "leaf.vhd", "-p", "base.vhd");
        Ok(dir.Path, "create", "-n", "base.vhd", "-s", "16");

        ProcessResult r = Run(dir.Path, "copy", "-n", "leaf.vhd", "-N", "copy2.vhd");

        Assert.Equal((22, "error creating copy2.vhd: -22\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
        Assert.False(File.Exists(dir.File("copy2.vhd")));
    }

    [Fact]
    public void QueryDepth_RawParent_CountsAsALevel()
    {
        // blktap's vhd_chain_depth adds one for a raw parent: a diff on a raw file is a chain of depth 2.
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("raw.img"), new byte[4 * MiB]);
        Ok(dir.Path, "snapshot", "-n", "r.vhd", "-p", "raw.img", "-m");
        Ok(dir.Path, "snapshot", "-n", "r2.vhd", "-p", "r.vhd", "-e");

        ProcessResult r = Run(dir.Path, "query", "-n", "r.vhd", "-d");
        Assert.Equal((0, "chain depth: 2\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
        r = Run(dir.Path, "query", "-n", "r2.vhd", "-d");
        Assert.Equal((0, "chain depth: 3\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
    }
}
