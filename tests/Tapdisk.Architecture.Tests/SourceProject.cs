using System.Xml.Linq;

namespace Tapdisk.Architecture.Tests;

/// <summary>One src/NAME/NAME.csproj, read as XML (no MSBuild evaluation: the rules are about what is written).</summary>
public sealed class SourceProject
{
    private SourceProject(string name, string directory, XDocument csproj)
    {
        Name = name;
        Directory = directory;
        Csproj = csproj;
    }

    public string Name { get; }

    public string Directory { get; }

    public XDocument Csproj { get; }

    /// <summary>Names of the projects in ProjectReference items (file names without .csproj).</summary>
    public IEnumerable<string> ProjectReferences => Items("ProjectReference")
        .Select(e => Path.GetFileNameWithoutExtension(((string?)e.Attribute("Include") ?? "").Replace('\\', '/')));

    /// <summary>Full paths of the ProjectReference items.</summary>
    public IEnumerable<string> ProjectReferencePaths => Items("ProjectReference")
        .Select(e => Path.GetFullPath(Path.Combine(Directory, ((string?)e.Attribute("Include") ?? "").Replace('\\', '/'))));

    public IEnumerable<string> InternalsVisibleTo => Items("InternalsVisibleTo").Select(e => (string?)e.Attribute("Include") ?? "");

    public bool AllowsUnsafeBlocks => Csproj.Descendants("AllowUnsafeBlocks").Any(e => string.Equals(e.Value.Trim(), "true", StringComparison.OrdinalIgnoreCase));

    /// <summary>The project's own C# files (bin/ and obj/ excluded).</summary>
    public IEnumerable<string> SourceFiles => System.IO.Directory.EnumerateFiles(Directory, "*.cs", SearchOption.AllDirectories)
        .Where(f => !f[Directory.Length..].Split('/').Any(part => part is "bin" or "obj"));

    /// <summary>Every src/*/*.csproj in the repository.</summary>
    public static IReadOnlyList<SourceProject> All()
    {
        string src = Path.Combine(RepoRoot, "src");
        return System.IO.Directory.GetDirectories(src)
            .Order(StringComparer.Ordinal)
            .SelectMany(dir => System.IO.Directory.GetFiles(dir, "*.csproj"))
            .Select(path => new SourceProject(Path.GetFileNameWithoutExtension(path), Path.GetDirectoryName(path)!, XDocument.Load(path)))
            .ToArray();
    }

    public static string RepoRoot
    {
        get
        {
            string? dir = AppContext.BaseDirectory;
            while (dir is not null && !File.Exists(Path.Combine(dir, "Tapdisk.sln")))
            {
                dir = Path.GetDirectoryName(dir);
            }

            return dir ?? throw new InvalidOperationException("cannot find the repository root (Tapdisk.sln) above " + AppContext.BaseDirectory);
        }
    }

    public override string ToString() => Name;

    private IEnumerable<XElement> Items(string name) => Csproj.Descendants(name).Where(e => e.Parent?.Name.LocalName == "ItemGroup");
}
