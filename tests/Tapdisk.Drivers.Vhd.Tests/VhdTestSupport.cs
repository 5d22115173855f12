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

    public static byte[] ReadAll(IBlockImage image) => DiskContent.ReadAll(image);

    /// <summary>Writes through the driver and applies the same bytes to the shadow model.</summary>
    public static void Write(IBlockImage image, byte[] shadow, long offsetBytes, byte[] data)
    {
        image.WriteAsync(offsetBytes, data).AsTask().GetAwaiter().GetResult();
        data.CopyTo(shadow, offsetBytes);
    }

    public static byte[] Pattern(int length, int seed) => DiskContent.Pattern(length, seed);

    public static string Sha256(string path) => DiskContent.Sha256(path);

    public static void AssertSameContent(byte[] expected, byte[] actual, string what) => DiskContent.AssertSame(expected, actual, what);

    public static ProcessResult QemuImg(params string[] args) => Testing.QemuImg.Run(args);

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

    public static void AssertQemuCheckClean(string vhdPath) => Testing.QemuImg.AssertVpcCheckClean(vhdPath);

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
