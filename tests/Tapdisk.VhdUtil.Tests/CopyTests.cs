using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>vhd-util copy (data-plane.md 3.4, reference-transcript.md 10.7), checked with vhd-util check and qemu-img compare.</summary>
public sealed class CopyTests
{
    private static readonly byte[] s_key = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"u8.ToArray();

    [Fact]
    public void Copy_TranscriptCases_SameOutputAndExitCodes()
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "lone.vhd", "-s", "8");
        Assert.Equal(string.Empty, Ok(dir.Path, "copy", "-n", "lone.vhd", "-N", "copy.vhd"));
        Assert.Equal(3584, new FileInfo(dir.File("copy.vhd")).Length);
        AssertValid(dir.Path, "copy.vhd");

        ProcessResult r = Run(dir.Path, "copy", "-n", "nonexistent.vhd", "-N", "copy3.vhd");
        Assert.Equal((2, "error opening nonexistent.vhd: -2\n", string.Empty), (r.ExitCode, r.StandardOutput, r.StandardError));
        Assert.False(File.Exists(dir.File("copy3.vhd")));

        r = Run(dir.Path, "copy");
        Assert.Equal((22, CopyCommand.Usage, "Must supply both existing and new VHD names\n"), (r.ExitCode, r.StandardOutput, r.StandardError));
    }

    [Fact]
    public void Copy_ChainOfThree_FlattenedToStandaloneQemuAgrees()
    {
        using var dir = new TempDirectory();
        byte[] expected = new byte[16 * MiB];
        Ok(dir.Path, "create", "-n", "base.vhd", "-s", "16");
        using (IBlockImage image = Open(dir.File("base.vhd")))
        {
            Write(image, 0, Pattern(3 * MiB, 1), expected);
            Write(image, 10 * MiB, Pattern(MiB, 2), expected);
        }

        Ok(dir.Path, "snapshot", "-n", "mid.vhd", "-p", "base.vhd");
        using (IBlockImage image = Open(dir.File("mid.vhd")))
        {
            Write(image, MiB, Pattern(MiB + 4096, 3), expected);
            Write(image, (14 * MiB) + 512, Pattern(1024, 4), expected);
        }

        Ok(dir.Path, "snapshot", "-n", "leaf.vhd", "-p", "mid.vhd");
        using (IBlockImage image = Open(dir.File("leaf.vhd")))
        {
            Write(image, 2 * MiB, Pattern(8192, 5), expected);
            Write(image, 10 * MiB, new byte[4096], expected);   // zeros over the base's data must stay zeros
        }

        Assert.Equal(string.Empty, Ok(dir.Path, "copy", "-n", "leaf.vhd", "-N", "flat.vhd"));
        AssertValid(dir.Path, "flat.vhd", "-b");
        Assert.Equal("flat.vhd has no parent\n", Ok(dir.Path, "query", "-n", "flat.vhd", "-p"));
        AssertQemuSees(dir.File("flat.vhd"), expected);
        AssertSameContent(expected, ReadAll(dir.File("flat.vhd")), "our read of the copy");

        // Sparse: blocks that are zero in the whole chain are not allocated in the copy.
        Assert.Equal("4\n", Ok(dir.Path, "query", "-n", "flat.vhd", "-a"));
    }

    [Fact]
    public void Copy_QemuWrittenSource_QemuCompareSaysIdentical()
    {
        using var dir = new TempDirectory();
        byte[] raw = Pattern(6 * MiB, 11);
        Array.Clear(raw, 2 * MiB, 2 * MiB);
        File.WriteAllBytes(dir.File("src.raw"), raw);
        QemuImg("convert", "-f", "raw", "-O", "vpc", dir.File("src.raw"), dir.File("q.vhd")).EnsureSuccess("qemu-img convert");

        Ok(dir.Path, "copy", "-n", "q.vhd", "-N", "c.vhd");
        AssertValid(dir.Path, "c.vhd", "-b");
        ProcessResult r = QemuImg("compare", "-f", "vpc", "-F", "vpc", dir.File("q.vhd"), dir.File("c.vhd"));
        Assert.True(r.ExitCode == 0, $"qemu-img compare: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }

    [Fact]
    public void Copy_WithKeyFile_EncryptedCopyDecryptsToSourceIncludingZeroSectors()
    {
        using var dir = new TempDirectory();
        byte[] expected = new byte[8 * MiB];
        Ok(dir.Path, "create", "-n", "plain.vhd", "-s", "8");
        using (IBlockImage image = Open(dir.File("plain.vhd")))
        {
            // A block with holes: the unwritten sectors must read back as zeros from the encrypted copy.
            Write(image, 4096, Pattern(8192, 21), expected);
            Write(image, (5 * MiB) + 512, Pattern(512, 22), expected);
        }

        File.WriteAllBytes(dir.File("enc,aes-xts-plain,512.key"), s_key);
        Assert.Equal(string.Empty, Ok(dir.Path, "copy", "-n", "plain.vhd", "-N", "enc.vhd", "-k", "enc,aes-xts-plain,512.key"));
        AssertValid(dir.Path, "enc.vhd", "-b");
        Assert.Equal(new string('0', 64) + " " + Ok(dir.Path, "key", "-C", "-k", "enc,aes-xts-plain,512.key"), Ok(dir.Path, "key", "-p", "-n", "enc.vhd"));
        Ok(dir.Path, "key", "-c", "-n", "enc.vhd", "-k", "enc,aes-xts-plain,512.key");

        AssertSameContent(expected, ReadDecrypted(dir.File("enc.vhd")), "decrypted read of the encrypted copy");

        // qemu knows nothing of the key: it sees ciphertext where data was, never the plaintext.
        QemuImg("convert", "-f", "vpc", "-O", "raw", dir.File("enc.vhd"), dir.File("stored.raw")).EnsureSuccess("qemu-img convert");
        byte[] stored = File.ReadAllBytes(dir.File("stored.raw"));
        Assert.False(stored.AsSpan(4096, 512).SequenceEqual(expected.AsSpan(4096, 512)), "data must be stored encrypted");
    }

    [Fact]
    public void Copy_EncryptedSourceWithKeyOnStdin_ReencryptedCopyMatches()
    {
        using var dir = new TempDirectory();
        byte[] expected = new byte[8 * MiB];
        Ok(dir.Path, "create", "-n", "src.vhd", "-s", "8");
        File.WriteAllBytes(dir.File("src,aes-xts-plain,512.key"), s_key);
        Ok(dir.Path, "key", "-s", "-n", "src.vhd", "-k", "src,aes-xts-plain,512.key", "-N", new string('7', 64));
        using (var key = new VhdKey(s_key))
        using (IBlockImage image = new ImageOpener(new RawImageDriver(), new VhdCryptoImageDriver(new VhdCryptoOptions { Key = key })).Open("vhd", dir.File("src.vhd"), ImageOpenOptions.ReadWrite with { DirectIo = false }))
        {
            Write(image, 3 * MiB, Pattern(MiB, 31), expected);
        }

        // Without the key the encrypted source is refused, and nothing is created.
        ProcessResult r = Run(dir.Path, "copy", "-n", "src.vhd", "-N", "nokey.vhd");
        Assert.Equal((126, "error opening src.vhd: -126\n"), (r.ExitCode, r.StandardOutput));
        Assert.False(File.Exists(dir.File("nokey.vhd")));

        r = ExternalTool.Run(Binary, ["copy", "-n", dir.File("src.vhd"), "-N", dir.File("dst.vhd"), "-E"], System.Text.Encoding.ASCII.GetString(s_key), TimeSpan.FromMinutes(5));
        Assert.True(r.ExitCode == 0, $"copy -E: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
        AssertValid(dir.Path, "dst.vhd", "-b");
        AssertSameContent(expected, ReadDecrypted(dir.File("dst.vhd")), "decrypted read of the copy");

        r = ExternalTool.Run(Binary, ["copy", "-n", dir.File("src.vhd"), "-N", dir.File("short.vhd"), "-E"], "short", TimeSpan.FromMinutes(5));
        Assert.Equal(22, r.ExitCode);
        Assert.False(File.Exists(dir.File("short.vhd")));
    }

    [Fact]
    public void Copy_FailsMidway_LeavesNoFileAndKeepsAnExistingDestination()
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "src.vhd", "-s", "8");
        using (IBlockImage image = Open(dir.File("src.vhd")))
        {
            Write(image, 0, Pattern(8 * MiB, 41));
        }

        var fail = new Dictionary<string, string> { ["TAPDISK_VHD_UTIL_COPY_FAIL_AFTER"] = "2" };
        ProcessResult r = Run(dir.Path, fail, "copy", "-n", "src.vhd", "-N", "dst.vhd");
        Assert.Equal(5, r.ExitCode);
        Assert.Equal("error copying src.vhd to dst.vhd: -5\n", r.StandardOutput);
        Assert.Equal(["src.vhd"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));

        File.WriteAllText(dir.File("dst.vhd"), "previous contents");
        r = Run(dir.Path, fail, "copy", "-n", "src.vhd", "-N", "dst.vhd");
        Assert.Equal(5, r.ExitCode);
        Assert.Equal("previous contents", File.ReadAllText(dir.File("dst.vhd")));
        Assert.Equal(2, Directory.GetFiles(dir.Path).Length);
    }

    [Theory]
    [InlineData("copy-chunk:3")]
    [InlineData("copy-rename")]
    public void Copy_KilledMidway_NothingAtTheDestinationName(string crashPoint)
    {
        using var dir = new TempDirectory();
        Ok(dir.Path, "create", "-n", "src.vhd", "-s", "8");
        using (IBlockImage image = Open(dir.File("src.vhd")))
        {
            Write(image, 0, Pattern(8 * MiB, 42));
        }

        ProcessResult r = Run(dir.Path, new Dictionary<string, string> { ["TAPDISK_VHD_UTIL_CRASH_AT"] = crashPoint }, "copy", "-n", "src.vhd", "-N", "dst.vhd");
        Assert.Equal(137, r.ExitCode);   // SIGKILL
        Assert.False(File.Exists(dir.File("dst.vhd")), "a killed copy published a file at the destination name");

        // Only a hidden temporary file is left behind, and a rerun replaces nothing but produces the full copy.
        Assert.All(Directory.GetFiles(dir.Path).Select(Path.GetFileName), n => Assert.True(n == "src.vhd" || n!.StartsWith(".dst.vhd.copy-", StringComparison.Ordinal), n));
        Ok(dir.Path, "copy", "-n", "src.vhd", "-N", "dst.vhd");
        AssertValid(dir.Path, "dst.vhd", "-b");
        AssertSameContent(ReadAll(dir.File("src.vhd")), ReadAll(dir.File("dst.vhd")), "copy after a killed attempt");
    }

    private static byte[] ReadDecrypted(string path)
    {
        using var key = new VhdKey(s_key);
        using IBlockImage image = new ImageOpener(new RawImageDriver(), new VhdCryptoImageDriver(new VhdCryptoOptions { Key = key })).Open("vhd", path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        byte[] all = new byte[image.SizeBytes];
        image.ReadAsync(0, all).AsTask().GetAwaiter().GetResult();
        return all;
    }
}
