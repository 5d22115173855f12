using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;

namespace Tapdisk.Benchmarks;

/// <summary>The suite's configuration: BDN defaults plus a throughput column and the full JSON report the budget check reads.</summary>
internal static class BenchmarkConfigs
{
    public static IConfig Create(bool quick, string artifactsPath)
    {
        ManualConfig config = ManualConfig.Create(DefaultConfig.Instance)
            .WithArtifactsPath(artifactsPath)
            .AddColumn(new ThroughputColumn())
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddExporter(JsonExporter.Full);

        if (quick)
        {
            // ShortRun: 1 launch, 3 warmups, 3 iterations per case, about two minutes for the suite plus one build of
            // BDN's generated project. Deliberately out of process: BDN's in-process toolchain (--inProcess) is faster
            // to start but reported a spurious 1-6 B/op on the 1 MiB cases (a few KiB allocated once in the measured
            // window by the host, while a standalone loop over the same calls allocates nothing), which would trip
            // the zero budgets in allocation-budget.json.
            config.AddJob(Job.ShortRun.WithId("Quick"));
        }

        return config;
    }
}
