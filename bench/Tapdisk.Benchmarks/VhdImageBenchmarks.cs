using BenchmarkDotNet.Attributes;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// A dynamic VHD (2 MiB blocks) with every block allocated and written, so reads hit data and writes are
/// overwrites of allocated, full blocks. First-write allocation is <see cref="VhdAllocationBenchmarks"/>.
/// </summary>
[MemoryDiagnoser]
public class VhdImageBenchmarks : ImageIoBenchmark
{
    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void VhdImage_RandomRead4K() => RandomRead();

    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void VhdImage_RandomOverwrite4K() => RandomWrite();

    [Benchmark(OperationsPerInvoke = SequentialOpsPerInvoke)]
    [BytesPerOperation(LargeBytes)]
    public void VhdImage_SequentialRead1M() => SequentialRead();

    [Benchmark(OperationsPerInvoke = SequentialOpsPerInvoke)]
    [BytesPerOperation(LargeBytes)]
    public void VhdImage_SequentialOverwrite1M() => SequentialWrite();

    protected override IBlockImage OpenImage(ImageOpenOptions options) => VhdImage.Open(BenchImages.PrepareVhd(), options, BenchImages.Opener);
}
