using System.Security.Cryptography;
using System.Text.Json;
using Tapdisk.Drivers.Raw;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Shared helpers: the driver table, whole-disk reads, shadow-tracked writes and the qemu peer tools.</summary>
internal static class VhdTestSupport
{
    public const int MiB = 1024 * 1024;

    public static ImageOpener NewOpener() => new(new RawImageDriver(), new VhdImageDriver());

    public static IBlockImage Open(string path, bool readOnly = false) =>
        NewOpener().Open("vhd", path, readOnly ? ImageOpenOptions.ReadOnlyDefault : ImageOpenOptions.ReadWrite);

    /// <summary>Reads the whole virtual disk in 1 MiB requests.</summary>
    public static byte[] ReadAll(IBlockImage image)
    {
        byte[] all = new byte[image.SizeBytes];
        for (long at = 0; at < all.Length; at += MiB)
        {
            int n = (int)Math.Min(MiB, all.Length - at);
            image.ReadAsync(at, all.AsMemory((int)at, n)).AsTask().GetAwaiter().GetResult();
        }

        return all;
    }

    /// <summary>Writes through the driver and applies the same bytes to the shadow model.</summary>
    public static void Write(IBlockImage image, byte[] shadow, long offsetBytes, byte[] data)
    {
        image.WriteAsync(offsetBytes, data).AsTask().GetAwaiter().GetResult();
        data.CopyTo(shadow, offsetBytes);
    }

    /// <summary>A deterministic, position-dependent pattern (never all zeros).</summary>
    public static byte[] Pattern(int length, int seed)
    {
        byte[] b = new byte[length];
        new Random(seed).NextBytes(b);
        b[0] = (byte)(seed | 1);
        return b;
    }

    public static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Asserts two disk images are equal, reporting the first differing offset rather than a megabyte dump.</summary>
    public static void AssertSameContent(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int diff = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(diff == expected.Length, $"{what}: first difference at byte {diff} (0x{diff:x}): expected 0x{(diff < expected.Length ? expected[diff] : 0):x2}, got 0x{(diff < actual.Length ? actual[diff] : 0):x2}");
    }

    public static ProcessResult QemuImg(params string[] args) => ExternalTool.Run(ExternalTool.Require("qemu-img"), args);

    public static void QemuIo(string path, string command) =>
        ExternalTool.Run(ExternalTool.Require("qemu-io"), "-f", "vpc", "-c", command, path).EnsureSuccess($"qemu-io -c '{command}' {path}");

    /// <summary>qemu-img convert -f vpc -O raw: qemu's view of the disk.</summary>
    public static byte[] QemuReadAll(string vhdPath, string scratchDirectory)
    {
        string raw = Path.Combine(scratchDirectory, Path.GetFileName(vhdPath) + ".qemu.raw");
        QemuImg("convert", "-f", "vpc", "-O", "raw", vhdPath, raw).EnsureSuccess("qemu-img convert " + vhdPath);
        byte[] bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    public static long QemuVirtualSize(string vhdPath)
    {
        ProcessResult r = QemuImg("info", "-f", "vpc", "--output=json", vhdPath).EnsureSuccess("qemu-img info " + vhdPath);
        using JsonDocument doc = JsonDocument.Parse(r.StandardOutput);
        return doc.RootElement.GetProperty("virtual-size").GetInt64();
    }

    /// <summary>qemu-img check on the file: clean, or (qemu 7.2) "does not support checks" for vpc, which is not a failure.</summary>
    public static void AssertQemuCheckClean(string vhdPath)
    {
        ProcessResult r = QemuImg("check", "-f", "vpc", vhdPath);
        bool unsupported = r.ExitCode == 63 && r.StandardError.Contains("does not support checks", StringComparison.Ordinal);
        Assert.True(r.ExitCode == 0 || unsupported, $"qemu-img check -f vpc {vhdPath}: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }

    /// <summary>qemu-img compare -f vpc -F raw says identical.</summary>
    public static void AssertQemuCompareIdentical(string vhdPath, byte[] shadow, string scratchDirectory)
    {
        string raw = Path.Combine(scratchDirectory, Path.GetFileName(vhdPath) + ".shadow.raw");
        File.WriteAllBytes(raw, shadow);
        ProcessResult r = QemuImg("compare", "-f", "vpc", "-F", "raw", vhdPath, raw);
        File.Delete(raw);
        Assert.True(r.ExitCode == 0, $"qemu-img compare {vhdPath} against the shadow: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }

    /// <summary>Runs an image operation, waiting for it.</summary>
    public static void Run(ValueTask operation) => operation.AsTask().GetAwaiter().GetResult();
}
