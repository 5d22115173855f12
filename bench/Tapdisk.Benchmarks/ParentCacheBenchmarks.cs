using BenchmarkDotNet.Attributes;
using K4os.Compression.LZ4;
using Tapdisk.Drivers.Raw;
using Tapdisk.Filters.Cache;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// The shared parent cache's hit path on one core: LZ4 decoding of a granule of real files (the machine's
/// /usr/bin, as a golden image's file system holds), and whole- and part-granule hits through the "bc" layer: from
/// the hot tier (the granules these hit are promoted during warm-up) and, in a cache without one, decoded.
/// </summary>
[MemoryDiagnoser]
public class ParentCacheBenchmarks
{
    private const int Granule = ParentCache.GranuleBytes;
    private readonly byte[] _target = new byte[Granule];
    private readonly byte[] _small = new byte[4096];
    private byte[] _encoded = [];
    private BlockCacheFilter? _cache;
    private BlockCacheFilter? _decoding;
    private string _file = string.Empty;

    [GlobalSetup]
    public void Setup()
    {
        // 16 granules of executables and libraries, so the figure is for data a VM's disk really holds.
        byte[] raw = new byte[Granule * 16];
        int at = 0;
        foreach (string path in Directory.EnumerateFiles("/usr/bin").Order(StringComparer.Ordinal))
        {
            if (at == raw.Length)
            {
                break;
            }

            byte[] bytes = File.ReadAllBytes(path);
            int n = Math.Min(bytes.Length, raw.Length - at);
            bytes.AsSpan(0, n).CopyTo(raw.AsSpan(at));
            at += n;
        }

        byte[] scratch = new byte[LZ4Codec.MaximumOutputSize(Granule)];
        int encoded = LZ4Codec.Encode(raw.AsSpan(0, Granule), scratch, LZ4Level.L00_FAST);
        _encoded = scratch.AsSpan(0, encoded).ToArray();

        _file = Path.Combine(BenchImages.Folder, "parent-cache.img");
        Directory.CreateDirectory(BenchImages.Folder);
        File.WriteAllBytes(_file, raw);
        _cache = BlockCacheFilter.Open(RawImage.Open(_file, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }), new ParentCache(64 << 20));
        Sync.Complete(_cache.ReadAsync(0, new byte[raw.Length]));
        _decoding = BlockCacheFilter.Open(RawImage.Open(_file, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }), new ParentCache(64 << 20, hotTier: false));
        Sync.Complete(_decoding.ReadAsync(0, new byte[raw.Length]));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cache?.Dispose();
        _decoding?.Dispose();
    }

    [Benchmark]
    [BytesPerOperation(Granule)]
    public int Lz4_DecodeGranule() => LZ4Codec.Decode(_encoded, _target);

    [Benchmark]
    [BytesPerOperation(Granule)]
    public void ParentCache_HitGranule() => Sync.Complete(_cache!.ReadAsync(Granule * 3, _target));

    [Benchmark]
    [BytesPerOperation(4096)]
    public void ParentCache_Hit4K() => Sync.Complete(_cache!.ReadAsync((Granule * 5) + 8192, _small));

    [Benchmark]
    [BytesPerOperation(Granule)]
    public void ParentCache_HitGranuleDecoded() => Sync.Complete(_decoding!.ReadAsync(Granule * 3, _target));

    /// <summary>The third 4 KiB of a granule: a partial decode of 12 KiB, then a copy.</summary>
    [Benchmark]
    [BytesPerOperation(4096)]
    public void ParentCache_Hit4KDecoded() => Sync.Complete(_decoding!.ReadAsync((Granule * 5) + 8192, _small));
}
