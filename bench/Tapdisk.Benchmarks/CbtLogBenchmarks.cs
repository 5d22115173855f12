using BenchmarkDotNet.Attributes;
using Tapdisk.Drivers.Raw;
using Tapdisk.Filters.Cbt;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// The "aio" driver over the same 1 GiB file as <see cref="RawImageBenchmarks"/>, behind blktap's CBT log filter:
/// the difference with RawImage_RandomWrite4K is what tracking costs per write.
/// </summary>
[MemoryDiagnoser]
public class CbtLogBenchmarks : ImageIoBenchmark
{
    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void CbtLog_RandomWrite4K() => RandomWrite();

    [Benchmark(OperationsPerInvoke = RandomOpsPerInvoke)]
    [BytesPerOperation(SmallBytes)]
    public void CbtLog_RandomRead4K() => RandomRead();

    protected override IBlockImage OpenImage(ImageOpenOptions options)
    {
        string raw = BenchImages.PrepareRaw();
        RawImage image = RawImage.Open(raw, options);

        // A fresh log as cbt-util create makes it: zeroed header with the size, zeroed bitmap.
        string log = raw + ".cbtlog";
        byte[] bytes = new byte[CbtLogHeader.Size + (int)CbtBitmap.BitmapBytes((ulong)image.SizeBytes)];
        new CbtLogHeader { DiskSizeBytes = (ulong)image.SizeBytes }.Write(bytes);
        File.WriteAllBytes(log, bytes);
        return CbtLogFilter.Open(image, log);
    }

    protected override bool? IsDirect(IBlockImage image) => ((RawImage)((CbtLogFilter)image).Next).IsDirect;
}
