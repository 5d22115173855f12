using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Tapdisk.Benchmarks;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project bench/Tapdisk.Benchmarks -- --filter '*' [--quick]</c>.
/// Every other argument is BenchmarkDotNet's own command line.
/// </summary>
public static class Program
{
    public const string QuickFlag = "--quick";

    public static int Main(string[] args)
    {
        bool quick = args.Contains(QuickFlag, StringComparer.Ordinal);
        string[] rest = [.. args.Where(a => a != QuickFlag)];
        IConfig config = BenchmarkConfigs.Create(quick, ArtifactsPath());
        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest, config);
        bool failed = summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
        return failed ? 1 : 0;
    }

    /// <summary>artifacts/bench under the repository root (git-ignored), so check-allocations.sh knows where to look.</summary>
    private static string ArtifactsPath()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tapdisk.sln")))
            {
                return Path.Combine(dir.FullName, "artifacts", "bench");
            }
        }

        return Path.Combine(Environment.CurrentDirectory, "BenchmarkDotNet.Artifacts");
    }
}
