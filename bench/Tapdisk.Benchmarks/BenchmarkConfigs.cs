using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

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
            // ShortRun (1 launch, 3 warmups, 3 iterations) in process: no generated project to build, which on a
            // shared 2-core machine costs more than the measurements. Good enough for allocation budgets and
            // order-of-magnitude throughput; use the default job for numbers worth comparing.
            config.AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("Quick"));
        }

        return config;
    }
}
