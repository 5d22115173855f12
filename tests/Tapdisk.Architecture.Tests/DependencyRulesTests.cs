using Xunit;

namespace Tapdisk.Architecture.Tests;

/// <summary>Project references follow STYLE.md section 2.</summary>
public sealed class DependencyRulesTests
{
    public static TheoryData<string> Projects => new(SourceProject.All().Select(p => p.Name));

    [Fact]
    public void SourceTree_HasTheBottomLayers()
    {
        string[] names = SourceProject.All().Select(p => p.Name).ToArray();

        // Guards against a vacuous pass: the scan must see the projects every later layer builds on.
        Assert.Contains(DependencyRules.Abi, names);
        Assert.Contains(DependencyRules.Storage, names);
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_IsInTheRuleTable(string project)
    {
        Assert.True(
            DependencyRules.MayReference.ContainsKey(project),
            $"src project '{project}' has no entry in DependencyRules.MayReference (tests/Tapdisk.Architecture.Tests): decide its layer in STYLE.md section 2 and add it");
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_ReferencesOnlyAllowedProjects(string project)
    {
        SourceProject p = SourceProject.All().Single(x => x.Name == project);
        Assert.True(
            DependencyRules.MayReference.TryGetValue(project, out IReadOnlySet<string>? allowed),
            $"src project '{project}' is not in the rule table");

        string[] forbidden = p.ProjectReferences.Where(r => !allowed.Contains(r)).ToArray();

        Assert.True(
            forbidden.Length == 0,
            $"{project} references {string.Join(", ", forbidden)}; STYLE.md section 2 allows only: {(allowed.Count == 0 ? "nothing" : string.Join(", ", allowed.Order(StringComparer.Ordinal)))}");
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_ReferencesOnlySourceProjects(string project)
    {
        SourceProject p = SourceProject.All().Single(x => x.Name == project);
        string src = Path.Combine(SourceProject.RepoRoot, "src") + Path.DirectorySeparatorChar;

        string[] outside = p.ProjectReferencePaths.Where(r => !r.StartsWith(src, StringComparison.Ordinal) || !File.Exists(r)).ToArray();

        Assert.True(outside.Length == 0, $"{project} references projects outside src/ or missing ones: {string.Join(", ", outside)}");
    }

    [Fact]
    public void Executables_AreReferencedByNoProject()
    {
        string[] offenders = SourceProject.All()
            .SelectMany(p => p.ProjectReferences.Where(DependencyRules.Executables.Contains).Select(r => $"{p.Name} -> {r}"))
            .ToArray();

        Assert.True(offenders.Length == 0, "nothing may reference an executable: " + string.Join(", ", offenders));
    }

    [Fact]
    public void RuleTable_NeverAllowsAnExecutable()
    {
        string[] bad = DependencyRules.MayReference
            .SelectMany(kv => kv.Value.Where(DependencyRules.Executables.Contains).Select(r => $"{kv.Key} -> {r}"))
            .ToArray();

        Assert.Empty(bad);
    }

    [Fact]
    public void RuleTable_AllowedReferencesAreKnownProjects()
    {
        string[] unknown = DependencyRules.MayReference.Values.SelectMany(v => v).Where(r => !DependencyRules.MayReference.ContainsKey(r)).ToArray();

        Assert.Empty(unknown);
    }
}
