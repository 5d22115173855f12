using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;
using Xunit;

namespace Tapdisk.Architecture.Tests;

/// <summary>STYLE.md section 4 rule 1: P/Invoke only in Tapdisk.Abi; AllowUnsafeBlocks only in Abi and Blkif.</summary>
public sealed partial class InteropPlacementTests
{
    public static TheoryData<string> Projects => new(SourceProject.All().Select(p => p.Name));

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_SourceDeclaresNoNativeInteropOutsideAbi(string project)
    {
        if (project == DependencyRules.InteropProject)
        {
            return;
        }

        SourceProject p = SourceProject.All().Single(x => x.Name == project);
        string[] hits = p.SourceFiles
            .SelectMany(file => File.ReadLines(file).Select((line, i) => (file, line, i)))
            .Where(x => NativeInterop().IsMatch(x.line))
            .Select(x => $"  {Path.GetRelativePath(SourceProject.RepoRoot, x.file)}:{x.i + 1}: {x.line.Trim()}")
            .ToArray();

        Assert.True(hits.Length == 0, $"{project} declares native interop; all of it belongs in src/Tapdisk.Abi/Interop (STYLE.md section 4):\n" + string.Join('\n', hits));
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void Project_AllowsUnsafeBlocksOnlyIfAbiOrBlkif(string project)
    {
        SourceProject p = SourceProject.All().Single(x => x.Name == project);

        Assert.False(
            p.AllowsUnsafeBlocks && !DependencyRules.MayUseUnsafe.Contains(project),
            $"{project} sets AllowUnsafeBlocks; only {string.Join(" and ", DependencyRules.MayUseUnsafe)} may (STYLE.md section 4 rule 1)");
    }

    [Fact]
    public void SharedBuildFiles_DoNotAllowUnsafeBlocks()
    {
        string[] files = Directory.EnumerateFiles(SourceProject.RepoRoot, "Directory.Build.*", SearchOption.TopDirectoryOnly)
            .Concat(Directory.EnumerateFiles(Path.Combine(SourceProject.RepoRoot, "src"), "Directory.Build.*", SearchOption.AllDirectories))
            .Where(f => File.ReadAllText(f).Contains("AllowUnsafeBlocks", StringComparison.Ordinal))
            .ToArray();

        Assert.True(files.Length == 0, "AllowUnsafeBlocks set in a shared build file, which would apply to every project: " + string.Join(", ", files));
    }

    [Fact]
    public void BuiltAssemblies_ContainPInvokeOnlyInAbi()
    {
        string configuration = Path.GetFileName(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory));
        string bin = Path.Combine(SourceProject.RepoRoot, "artifacts", "build", "bin");
        string abiDll = Path.Combine(bin, DependencyRules.Abi, configuration, DependencyRules.Abi + ".dll");

        // Positive control: the scanner must find Abi's own P/Invokes, or it proves nothing about the others.
        Assert.True(File.Exists(abiDll), $"{abiDll} is missing; this project builds Tapdisk.Abi first, so the build layout has changed");
        Assert.NotEmpty(PInvokeMethods(abiDll));

        var offenders = new List<string>();
        foreach (SourceProject p in SourceProject.All().Where(p => p.Name != DependencyRules.InteropProject))
        {
            // Only assemblies built in this test's configuration; projects not built yet are covered by the source scan.
            string dll = Path.Combine(bin, p.Name, configuration, p.Name + ".dll");
            if (File.Exists(dll))
            {
                offenders.AddRange(PInvokeMethods(dll).Select(m => $"  {p.Name}: {m}"));
            }
        }

        Assert.True(offenders.Count == 0, "P/Invoke methods outside Tapdisk.Abi (STYLE.md section 4 rule 1):\n" + string.Join('\n', offenders));
    }

    /// <summary>Methods whose metadata carries pinvokeimpl (what both DllImport and LibraryImport's generated stubs compile to).</summary>
    private static List<string> PInvokeMethods(string assemblyPath)
    {
        using FileStream stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        MetadataReader md = pe.GetMetadataReader();
        var found = new List<string>();
        foreach (MethodDefinitionHandle h in md.MethodDefinitions)
        {
            MethodDefinition method = md.GetMethodDefinition(h);
            if ((method.Attributes & MethodAttributes.PinvokeImpl) != 0)
            {
                TypeDefinition type = md.GetTypeDefinition(method.GetDeclaringType());
                found.Add($"{md.GetString(type.Name)}.{md.GetString(method.Name)}");
            }
        }

        return found;
    }

    /// <summary>Attributes and constructs that call native code: [DllImport], [LibraryImport], extern methods, NativeLibrary, unmanaged function pointers.</summary>
    [GeneratedRegex(@"\[\s*(?:assembly:\s*)?(?:[\w.]+\.)?(?:LibraryImport|DllImport)(?:Attribute)?\b|\bstatic\s+(?:\w+\s+)*extern\s|\bextern\s+static\b|\bNativeLibrary\s*\.|delegate\s*\*\s*unmanaged")]
    private static partial Regex NativeInterop();
}
