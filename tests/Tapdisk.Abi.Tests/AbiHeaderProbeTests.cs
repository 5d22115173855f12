using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Abi.Tests;

/// <summary>C headers == manifest: each native/abi-probes group compiled as _Static_asserts against the real headers.</summary>
public sealed partial class AbiHeaderProbeTests
{
    public static TheoryData<string> Groups => new(AbiManifest.GroupNames);

    [Fact]
    public void Manifest_AllGroups_ParseAndAreNonEmpty()
    {
        IReadOnlyList<AbiProbeGroup> groups = AbiManifest.LoadAll();
        Assert.NotEmpty(groups);
        Assert.All(groups, g => Assert.NotEmpty(g.Entries));
        Assert.True(File.Exists(AbiProbeSource.TemplatePath), "missing " + AbiProbeSource.TemplatePath);
    }

    [Theory]
    [MemberData(nameof(Groups))]
    public void Group_CompiledAgainstSystemHeaders_MatchesManifest(string group)
    {
        AbiProbeGroup g = AbiManifest.Load(group);
        Assert.True(g.Arch == CurrentArch, $"{group}.probe describes {g.Arch} but this machine is {CurrentArch}: add probes for this architecture");

        using var dir = new TempDirectory();
        string cFile = dir.File(group + ".c");
        File.WriteAllText(cFile, AbiProbeSource.StaticAsserts(g));
        ProcessResult result = Gcc.SyntaxCheck(cFile);
        if (result.ExitCode != 0)
        {
            Assert.Fail(Explain(g, result.StandardError, dir));
        }
    }

    [Fact]
    public void Group_WrongValueInManifest_FailsNamingTheItem()
    {
        // Guards against a vacuous check: a deliberately wrong value must be caught and named.
        AbiProbeGroup g = AbiManifest.Parse("self-test", "arch x86_64\ninclude <sys/file.h>\nconst LOCK_SH 1 => -\nconst LOCK_EX 3 => -\n");
        using var dir = new TempDirectory();
        string cFile = dir.File("self-test.c");
        File.WriteAllText(cFile, AbiProbeSource.StaticAsserts(g));

        ProcessResult result = Gcc.SyntaxCheck(cFile);

        Assert.NotEqual(0, result.ExitCode);
        string explanation = Explain(g, result.StandardError, dir);
        Assert.Contains("self-test.probe:4: LOCK_EX: manifest says 3, headers say 2", explanation, StringComparison.Ordinal);
        Assert.DoesNotContain("LOCK_SH", explanation, StringComparison.Ordinal);
    }

    [Fact]
    public void Group_MissingHeader_FailsNamingTheHeader()
    {
        AbiProbeGroup g = AbiManifest.Parse("self-test", "arch x86_64\ninclude <tapdisk/no-such-header.h>\nconst X 1 => -\n");
        using var dir = new TempDirectory();
        string cFile = dir.File("self-test.c");
        File.WriteAllText(cFile, AbiProbeSource.StaticAsserts(g));

        ProcessResult result = Gcc.SyntaxCheck(cFile);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("missing header tapdisk/no-such-header.h", Explain(g, result.StandardError, dir), StringComparison.Ordinal);
    }

    private static string CurrentArch => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "x86_64",
        Architecture.Arm64 => "aarch64",
        Architecture other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>Turns gcc's complaint into a message naming each mismatching item, its expected and its real value.</summary>
    private static string Explain(AbiProbeGroup g, string stderr, TempDirectory dir)
    {
        var message = new StringBuilder($"ABI probe group '{g.Name}' does not match the system headers:\n");
        foreach (Match m in MissingHeader().Matches(stderr))
        {
            message.Append("  missing header ").Append(m.Groups[1].Value)
                .Append(" (install gcc libc6-dev linux-libc-dev libxen-dev; .ci/setup does)\n");
        }

        Dictionary<int, long>? actual = null;
        foreach (AbiProbeEntry e in g.Entries.Where(e => stderr.Contains(e.ToString(), StringComparison.Ordinal)))
        {
            actual ??= DumpValues(g, dir);
            string real = actual is not null && actual.TryGetValue(g.Entries.ToList().IndexOf(e), out long v) ? AbiProbeEntry.FormatValue(v) : "?";
            message.Append("  ").Append(e.Location).Append(": ").Append(e.Item).Append(": manifest says ").Append(e.ValueText)
                .Append(", headers say ").Append(real).Append('\n');
        }

        return message.Append("gcc said:\n").Append(stderr).ToString();
    }

    /// <summary>Builds and runs the value-printing program; null when it cannot be built (e.g. an unknown name).</summary>
    private static Dictionary<int, long>? DumpValues(AbiProbeGroup g, TempDirectory dir)
    {
        string cFile = dir.File(g.Name + "-values.c");
        string exe = dir.File(g.Name + "-values");
        File.WriteAllText(cFile, AbiProbeSource.ValueDump(g));
        if (Gcc.CompileAndLink(cFile, exe).ExitCode != 0)
        {
            return null;
        }

        ProcessResult run = ExternalTool.Run(exe);
        if (run.ExitCode != 0)
        {
            return null;
        }

        var values = new Dictionary<int, long>();
        foreach (string line in run.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] parts = line.Split(' ');
            values[int.Parse(parts[0], CultureInfo.InvariantCulture)] = long.Parse(parts[1], CultureInfo.InvariantCulture);
        }

        return values;
    }

    [GeneratedRegex(@"fatal error: ([^:\s]+): No such file or directory")]
    private static partial Regex MissingHeader();
}
