using System.Text;

namespace Tapdisk.Abi.Tests;

/// <summary>Turns a manifest group into C: a _Static_assert file (from probe.c.in) and a value-printing program for diagnostics.</summary>
public static class AbiProbeSource
{
    public static string TemplatePath => Path.Combine(AbiManifest.Directory, "probe.c.in");

    /// <summary>The C file with one <c>_Static_assert</c> per entry; each message is the entry's <see cref="AbiProbeEntry.ToString"/>.</summary>
    public static string StaticAsserts(AbiProbeGroup group)
    {
        var asserts = new StringBuilder();
        foreach (AbiProbeEntry e in group.Entries)
        {
            asserts.Append("_Static_assert((").Append(e.CExpression).Append(") == (").Append(e.Value).Append("LL), \"")
                .Append(Escape(e.ToString())).Append("\");\n");
        }

        return File.ReadAllText(TemplatePath)
            .Replace("@GROUP@", group.Name, StringComparison.Ordinal)
            .Replace("@PREAMBLE@", string.Join('\n', group.Preamble), StringComparison.Ordinal)
            .Replace("@ASSERTS@", asserts.ToString(), StringComparison.Ordinal);
    }

    /// <summary>A program printing "index value" per entry, to report what the headers really say after a mismatch.</summary>
    public static string ValueDump(AbiProbeGroup group)
    {
        var c = new StringBuilder();
        foreach (string line in group.Preamble)
        {
            c.Append(line).Append('\n');
        }

        c.Append("#include <stddef.h>\n#include <stdio.h>\nint main(void)\n{\n");
        for (int i = 0; i < group.Entries.Count; i++)
        {
            c.Append("    printf(\"%d %lld\\n\", ").Append(i).Append(", (long long)(").Append(group.Entries[i].CExpression).Append("));\n");
        }

        c.Append("    return 0;\n}\n");
        return c.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);
}
