using System.Diagnostics;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>Runs the built vhd-util as a real process, and builds test images through our own driver.</summary>
internal static class VhdUtilProcess
{
    public const int MiB = 1024 * 1024;

    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(5);

    /// <summary>The vhd-util executable: the AOT one in artifacts/bin if published, else this configuration's build.</summary>
    public static string Binary => ExternalTool.RepoExecutable("Tapdisk.VhdUtil", "vhd-util");

    public static ProcessResult Run(string workingDirectory, params string[] args) => Run(workingDirectory, null, args);

    public static ProcessResult Run(string workingDirectory, IDictionary<string, string>? environment, params string[] args)
    {
        ProcessStartInfo psi = ExternalTool.StartInfo(Binary, args, environment);
        psi.WorkingDirectory = workingDirectory;
        return ExternalTool.Run(psi, stdin: null, s_hangGuard);
    }

    public static string Ok(string workingDirectory, params string[] args)
    {
        ProcessResult r = Run(workingDirectory, args);
        Assert.True(r.ExitCode == 0, $"vhd-util {string.Join(' ', args)}: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
        return r.StandardOutput;
    }

    public static void AssertValid(string workingDirectory, string name, params string[] extra)
    {
        ProcessResult r = Run(workingDirectory, ["check", "-n", name, .. extra]);
        Assert.True(r.ExitCode == 0 && r.StandardOutput.StartsWith(name + " is valid", StringComparison.Ordinal), $"check {name}: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }

    public static ImageOpener NewOpener() => new(new RawImageDriver(), new VhdImageDriver());

    /// <summary>Opens a VHD with its chain through our driver (the same code tapdisk serves with).</summary>
    public static IBlockImage Open(string path, bool readOnly = false) =>
        NewOpener().Open("vhd", path, readOnly ? ImageOpenOptions.ReadOnlyDefault with { DirectIo = false } : ImageOpenOptions.ReadWrite with { DirectIo = false });

    public static void Write(IBlockImage image, long offsetBytes, byte[] data, byte[]? shadow = null)
    {
        image.WriteAsync(offsetBytes, data).AsTask().GetAwaiter().GetResult();
        if (shadow is not null)
        {
            data.CopyTo(shadow, offsetBytes);
        }
    }

    public static byte[] ReadAll(string path)
    {
        using IBlockImage image = Open(path, readOnly: true);
        return DiskContent.ReadAll(image);
    }

    public static byte[] Pattern(int length, int seed) => DiskContent.Pattern(length, seed);

    public static string Sha256(string path) => DiskContent.Sha256(path);

    public static void AssertSameContent(byte[] expected, byte[] actual, string what) => DiskContent.AssertSame(expected, actual, what);

    public static ProcessResult QemuImg(params string[] args) => Testing.QemuImg.Run(args);

    /// <summary>qemu-img compare -f vpc -F raw against the expected bytes says identical.</summary>
    public static void AssertQemuSees(string vhdPath, byte[] expected)
    {
        string raw = vhdPath + ".expected.raw";
        File.WriteAllBytes(raw, expected);
        ProcessResult r = QemuImg("compare", "-f", "vpc", "-F", "raw", vhdPath, raw);
        File.Delete(raw);
        Assert.True(r.ExitCode == 0, $"qemu-img compare {vhdPath}: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }

    public static void AssertQemuCheckClean(string vhdPath) => Testing.QemuImg.AssertVpcCheckClean(vhdPath);
}
