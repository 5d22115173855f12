using System.Globalization;
using Tapdisk.Testing;

namespace Tapdisk.Abi.Tests;

/// <summary>Reads the expected-values manifests in native/abi-probes (format: native/abi-probes/README.md).</summary>
public static class AbiManifest
{
    public const string Extension = ".probe";

    public static string Directory => Path.Combine(ExternalTool.RepoRoot, "native", "abi-probes");

    public static IReadOnlyList<string> GroupNames =>
        System.IO.Directory.GetFiles(Directory, "*" + Extension)
            .Select(Path.GetFileNameWithoutExtension)
            .OfType<string>()
            .Order(StringComparer.Ordinal)
            .ToArray();

    public static AbiProbeGroup Load(string group) => Parse(group, File.ReadAllText(Path.Combine(Directory, group + Extension)));

    public static IReadOnlyList<AbiProbeGroup> LoadAll() => GroupNames.Select(Load).ToArray();

    /// <summary>Parses one manifest; throws <see cref="FormatException"/> naming the file and line of the first bad line.</summary>
    public static AbiProbeGroup Parse(string group, string text)
    {
        string? arch = null;
        var preamble = new List<string>();
        var entries = new List<AbiProbeEntry>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int lineNumber = i + 1;
            string line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            string keyword = line.Split(' ', 2)[0];
            string rest = line.Length > keyword.Length ? line[(keyword.Length + 1)..].Trim() : "";
            switch (keyword)
            {
                case "arch":
                    arch = arch is null ? rest : throw Bad(group, lineNumber, "arch is given twice");
                    break;
                case "define":
                case "include":
                case "c":
                    if (entries.Count > 0)
                    {
                        throw Bad(group, lineNumber, $"'{keyword}' after the first entry; preamble lines come first");
                    }

                    if (rest.Length == 0)
                    {
                        throw Bad(group, lineNumber, $"'{keyword}' needs an argument");
                    }

                    preamble.Add(keyword switch
                    {
                        "define" => "#define " + rest,
                        "include" => "#include " + rest,
                        _ => rest,
                    });
                    break;
                case "sizeof":
                case "offsetof":
                case "fieldsize":
                case "const":
                    entries.Add(ParseEntry(group, lineNumber, keyword, rest));
                    break;
                default:
                    throw Bad(group, lineNumber, $"unknown keyword '{keyword}'");
            }
        }

        if (arch is null)
        {
            throw Bad(group, 0, "no 'arch' line");
        }

        if (entries.Count == 0)
        {
            throw Bad(group, 0, "no entries");
        }

        return new AbiProbeGroup(group, arch, preamble, entries);
    }

    private static AbiProbeEntry ParseEntry(string group, int lineNumber, string keyword, string rest)
    {
        int arrow = rest.IndexOf("=>", StringComparison.Ordinal);
        if (arrow < 0)
        {
            throw Bad(group, lineNumber, "missing '=> TARGET' (use '=> -' for a fact with no C# counterpart)");
        }

        string targetText = rest[(arrow + 2)..].Trim();
        string[] words = rest[..arrow].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (targetText.Length == 0 || targetText.Contains(' ', StringComparison.Ordinal))
        {
            throw Bad(group, lineNumber, $"bad target '{targetText}'");
        }

        string? target = targetText == "-" ? null : targetText;
        int minWords = keyword switch { "const" => 2, "sizeof" => 2, _ => 3 };
        if (words.Length < minWords || (keyword == "const" && words.Length != 2))
        {
            throw Bad(group, lineNumber, $"'{keyword}' needs {(keyword == "const" ? "NAME VALUE" : keyword == "sizeof" ? "C-TYPE VALUE" : "C-TYPE MEMBER VALUE")}");
        }

        long value = ParseValue(words[^1]) ?? throw Bad(group, lineNumber, $"bad value '{words[^1]}' (decimal or 0x hex)");
        return keyword switch
        {
            "const" => new AbiProbeEntry(group, lineNumber, AbiProbeKind.Const, "", null, words[0], value, target),
            "sizeof" => new AbiProbeEntry(group, lineNumber, AbiProbeKind.SizeOf, string.Join(' ', words[..^1]), null, "", value, target),
            "offsetof" => new AbiProbeEntry(group, lineNumber, AbiProbeKind.OffsetOf, string.Join(' ', words[..^2]), words[^2], "", value, target),
            _ => new AbiProbeEntry(group, lineNumber, AbiProbeKind.FieldSize, string.Join(' ', words[..^2]), words[^2], "", value, target),
        };
    }

    public static long? ParseValue(string text)
    {
        bool negative = text.StartsWith('-');
        string digits = negative ? text[1..] : text;
        bool ok = digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(digits.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long v)
            : long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        return ok ? (negative ? -v : v) : null;
    }

    private static FormatException Bad(string group, int line, string why) => new($"{group}{Extension}:{line}: {why}");
}
