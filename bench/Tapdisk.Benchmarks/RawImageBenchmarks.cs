using BenchmarkDotNet.Attributes;
using Tapdisk.Drivers.Raw;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>The "aio" driver over a fully written 1 GiB file.</summary>
[MemoryDiagnoser]
public class RawImageBenchmarks : ImageIoBenchmark
{
    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void RawImage_RandomRead4K() => RandomRead();

    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void RawImage_RandomWrite4K() => RandomWrite();

    [Benchmark(OperationsPerInvoke = SequentialOpsPerInvoke)]
    [BytesPerOperation(LargeBytes)]
    public void RawImage_SequentialRead1M() => SequentialRead();

    [Benchmark(OperationsPerInvoke = SequentialOpsPerInvoke)]
    [BytesPerOperation(LargeBytes)]
    public void RawImage_SequentialWrite1M() => SequentialWrite();

    protected override IBlockImage OpenImage(ImageOpenOptions options) => RawImage.Open(BenchImages.PrepareRaw(), options);

    protected override bool? IsDirect(IBlockImage image) => ((RawImage)image).IsDirect;
}
