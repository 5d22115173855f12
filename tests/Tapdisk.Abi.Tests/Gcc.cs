using Tapdisk.Testing;

namespace Tapdisk.Abi.Tests;

/// <summary>Runs gcc on generated probe sources; a missing gcc fails the calling test with that reason.</summary>
public static class Gcc
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(2);

    // gcc's diagnostics are parsed, so keep them untranslated.
    private static readonly Dictionary<string, string> s_environment = new() { ["LC_ALL"] = "C" };

    public static string Path =>
        ExternalTool.Find("gcc") ?? throw new InvalidOperationException("gcc is not installed: the ABI probes cannot be compiled (run .ci/setup, which installs gcc libc6-dev linux-libc-dev libxen-dev)");

    public static ProcessResult SyntaxCheck(string cFile) =>
        ExternalTool.Run(Path, ["-std=gnu11", "-fsyntax-only", cFile], stdin: null, s_timeout, s_environment);

    public static ProcessResult CompileAndLink(string cFile, string output) =>
        ExternalTool.Run(Path, ["-std=gnu11", "-o", output, cFile], stdin: null, s_timeout, s_environment);
}
