using System.Text.RegularExpressions;
using Xunit;

namespace Tapdisk.Architecture.Tests;

/// <summary>STYLE.md section 2: InternalsVisibleTo goes only to the matching *.Tests project.</summary>
public sealed partial class InternalsVisibleToTests
{
    public static TheoryData<string> Projects => new(SourceProject.All().Select(p => p.Name));

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_GrantsInternalsOnlyToItsOwnTests(string project)
    {
        SourceProject p = SourceProject.All().Single(x => x.Name == project);
        string expected = project + ".Tests";

        var grants = p.InternalsVisibleTo.Select(name => (name, where: "csproj")).ToList();
        foreach (string file in p.SourceFiles)
        {
            foreach (Match m in AssemblyAttribute().Matches(File.ReadAllText(file)))
            {
                grants.Add((m.Groups[1].Value.Split(',')[0].Trim(), Path.GetRelativePath(SourceProject.RepoRoot, file)));
            }
        }

        string[] wrong = grants.Where(g => g.name != expected).Select(g => $"{g.name} ({g.where})").ToArray();

        Assert.True(wrong.Length == 0, $"{project} grants internals to {string.Join(", ", wrong)}; only {expected} may see them");
    }

    [GeneratedRegex(@"\[\s*assembly\s*:\s*(?:System\.Runtime\.CompilerServices\.)?InternalsVisibleTo(?:Attribute)?\s*\(\s*""([^""]*)""")]
    private static partial Regex AssemblyAttribute();
}
