using Tapdisk.Testing;
using Xunit;
using static Tapdisk.VhdUtil.Tests.VhdUtilProcess;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>key and marker on VHDs without a blktap batmap (qemu-img's): extended attributes, as blktap keeps them (data-plane.md 1.10).</summary>
public sealed class XattrFieldsTests
{
    [Fact]
    public void Key_QemuVhd_SetCheckPrintThroughXattr()
    {
        using var dir = new TempDirectory();
        QemuImg("create", "-f", "vpc", dir.File("q.vhd"), "16M").EnsureSuccess("qemu-img create");
        byte[] key = [.. Enumerable.Range(0, 64).Select(i => (byte)i)];
        File.WriteAllBytes(dir.File("q,aes-xts-plain,512.key"), key);
        File.WriteAllBytes(dir.File("q,aes-xts-plain,256.key"), key[..32]);

        Assert.Equal("none\n", Ok(dir.Path, "key", "-p", "-n", "q.vhd"));
        ProcessResult r = Run(dir.Path, "key", "-c", "-n", "q.vhd", "-k", "q,aes-xts-plain,512.key");
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("vhd_util_check_key: this vhd has no keyhash\n", r.StandardError, StringComparison.Ordinal);

        Ok(dir.Path, "key", "-s", "-n", "q.vhd", "-k", "q,aes-xts-plain,512.key");
        string hash = Ok(dir.Path, "key", "-C", "-k", "q,aes-xts-plain,512.key").TrimEnd('\n');
        Assert.Equal(new string('0', 64) + " " + hash + "\n", Ok(dir.Path, "key", "-p", "-n", "q.vhd"));
        Ok(dir.Path, "key", "-c", "-n", "q.vhd", "-k", "q,aes-xts-plain,512.key");
        r = Run(dir.Path, "key", "-c", "-n", "q.vhd", "-k", "q,aes-xts-plain,256.key");
        Assert.Equal(22, r.ExitCode);
        Assert.Contains("vhd_util_check_key: key does not match keyhash\n", r.StandardError, StringComparison.Ordinal);

        // The VHD itself is untouched (qemu's layout, still valid) and a snapshot carries the keyhash into its batmap.
        AssertValid(dir.Path, "q.vhd");
        Ok(dir.Path, "snapshot", "-n", "c.vhd", "-p", "q.vhd");
        Assert.Equal(new string('0', 64) + " " + hash + "\n", Ok(dir.Path, "key", "-p", "-n", "c.vhd"));
        AssertValid(dir.Path, "c.vhd");
    }

    [Fact]
    public void Marker_QemuVhd_SetQueryScanThroughXattr()
    {
        using var dir = new TempDirectory();
        QemuImg("create", "-f", "vpc", dir.File("q.vhd"), "16M").EnsureSuccess("qemu-img create");
        byte[] before = File.ReadAllBytes(dir.File("q.vhd"));
        Assert.Equal("marker: 0\n", Ok(dir.Path, "query", "-n", "q.vhd", "-m"));

        Ok(dir.Path, "set", "-n", "q.vhd", "-f", "marker", "-v", "200");
        Assert.Equal("marker: 200\n", Ok(dir.Path, "query", "-n", "q.vhd", "-m"));
        Assert.Contains(" marker=200 ", Ok(dir.Path, "scan", "-M", "q.vhd"), StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(dir.File("q.vhd")));
        AssertValid(dir.Path, "q.vhd");

        // A blktap VHD keeps its marker in the batmap header, not in an attribute.
        Ok(dir.Path, "create", "-n", "g.vhd", "-s", "16");
        Ok(dir.Path, "set", "-n", "g.vhd", "-f", "marker", "-v", "3");
        Assert.Equal("marker: 3\n", Ok(dir.Path, "query", "-n", "g.vhd", "-m"));
        Assert.Equal(3, File.ReadAllBytes(dir.File("g.vhd"))[2048 + 28]);
    }
}
