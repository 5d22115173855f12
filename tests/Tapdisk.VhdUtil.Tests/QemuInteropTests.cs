using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>Round trips with qemu-img: what qemu writes, vhd-util accepts; what vhd-util writes, qemu reads (data-plane.md 8.1).</summary>
public sealed class QemuInteropTests
{
    private static byte[] RawWithHoles(int megabytes, int seed)
    {
        byte[] raw = Pattern(megabytes * MiB, seed);
        Array.Clear(raw, 2 * MiB, 3 * MiB);   // whole zero blocks stay unallocated in qemu's output
        Array.Clear(raw, 9 * MiB, 4096);
        return raw;
    }

    [Theory]
    [InlineData("dynamic")]
    [InlineData("fixed")]
    public void QemuWritten_CheckAcceptsAndOurReaderAgrees(string subformat)
    {
        using var dir = new TempDirectory();
        byte[] raw = RawWithHoles(12, 7);
        File.WriteAllBytes(dir.File("src.raw"), raw);
        QemuImg("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=" + subformat, dir.File("src.raw"), dir.File("q.vhd")).EnsureSuccess("qemu-img convert");
        ProcessResult r = Run(dir.Path, "check", "-n", "q.vhd", "-b");
        Assert.True(r.ExitCode == 0, r.StandardOutput);
        Assert.Equal(subformat == "fixed" ? string.Empty : "q.vhd is valid\n", r.StandardOutput);

        // qemu rounds the size up to its CHS geometry; the extra tail reads as zeros.
        byte[] ours = ReadAll(dir.File("q.vhd"));
        Assert.True(ours.Length >= raw.Length);
        AssertSameContent(raw, ours[..raw.Length], "our read of qemu's image");

        QemuImg("create", "-f", "vpc", dir.File("empty.vhd"), "1G").EnsureSuccess("qemu-img create");
        AssertValid(dir.Path, "empty.vhd");
        QemuImg("create", "-f", "vpc", "-o", "force_size=on", dir.File("forced.vhd"), "1G").EnsureSuccess("qemu-img create");
        r = Run(dir.Path, "check", "-n", "forced.vhd");
        Assert.Equal(22, r.ExitCode);
        Assert.StartsWith("primary footer invalid: geometry too large\n", r.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public void OursWritten_QemuReadsCompareAndConvertsBack()
    {
        using var dir = new TempDirectory();
        byte[] raw = RawWithHoles(12, 9);
        Ok(dir.Path, "create", "-n", "o.vhd", "-s", "12");
        using (IBlockImage image = Open(dir.File("o.vhd")))
        {
            Write(image, 0, raw);
        }

        AssertValid(dir.Path, "o.vhd", "-b");
        AssertQemuCheckClean(dir.File("o.vhd"));
        AssertQemuSees(dir.File("o.vhd"), raw);

        // qemu converts ours to a fresh VHD, which we and check accept, and back to raw.
        QemuImg("convert", "-f", "vpc", "-O", "vpc", dir.File("o.vhd"), dir.File("back.vhd")).EnsureSuccess("qemu-img convert");
        AssertValid(dir.Path, "back.vhd");
        QemuImg("convert", "-f", "vpc", "-O", "raw", dir.File("o.vhd"), dir.File("back.raw")).EnsureSuccess("qemu-img convert");
        Assert.Equal(raw, File.ReadAllBytes(dir.File("back.raw")));

        Ok(dir.Path, "create", "-n", "f.vhd", "-s", "4", "-r");
        Assert.Equal(string.Empty, Ok(dir.Path, "check", "-n", "f.vhd"));
        AssertQemuSees(dir.File("f.vhd"), new byte[4 * MiB]);
    }
}
