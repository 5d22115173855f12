using Xunit;

namespace Tapdisk.Testing;

/// <summary>qemu-img as the peer that checks our VHDs.</summary>
public static class QemuImg
{
    public static ProcessResult Run(params string[] args) => ExternalTool.Run(ExternalTool.Require("qemu-img"), args);

    /// <summary>qemu-img check -f vpc: clean, or (qemu 7.2) "does not support checks" for vpc, which is not a failure.</summary>
    public static void AssertVpcCheckClean(string vhdPath)
    {
        ProcessResult r = Run("check", "-f", "vpc", vhdPath);
        bool unsupported = r.ExitCode == 63 && r.StandardError.Contains("does not support checks", StringComparison.Ordinal);
        Assert.True(r.ExitCode == 0 || unsupported, $"qemu-img check -f vpc {vhdPath}: exit {r.ExitCode}\n{r.StandardOutput}\n{r.StandardError}");
    }
}
