using System.Text;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Filters.Cache.Tests;

public sealed class BlockCacheFilterTests : IDisposable
{
    private const int Granule = ParentCache.GranuleBytes;
    private readonly TempDirectory _scratch = new();

    public void Dispose() => _scratch.Dispose();

    /// <summary>Text-like bytes (compress well, as a file system's do) or random ones (do not compress).</summary>
    private string ParentFile(string name, int bytes, bool compressible = true, int seed = 1)
    {
        byte[] data = new byte[bytes];
        if (compressible)
        {
            byte[] words = Encoding.ASCII.GetBytes("usr lib share bin include locale doc man python3 perl ");
            var random = new Random(seed);
            for (int i = 0; i < bytes; i++)
            {
                data[i] = random.Next(32) == 0 ? (byte)random.Next(256) : words[(i + seed) % words.Length];
            }
        }
        else
        {
            new Random(seed).NextBytes(data);
        }

        string path = _scratch.File(name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static byte[] Read(BlockCacheFilter bc, long offsetBytes, int length)
    {
        byte[] buffer = new byte[length];
        bc.ReadAsync(offsetBytes, buffer).AsTask().GetAwaiter().GetResult();
        return buffer;
    }

    /// <summary>A hit: answered before ReadAsync returns, as ValueTask.CompletedTask (nothing to consume).</summary>
    private static void HitInline(BlockCacheFilter bc, long offsetBytes, byte[] buffer)
    {
        // Only the completion is read: a hit returns ValueTask.CompletedTask, which has no source to consume.
#pragma warning disable CA2012
        bool inline = bc.ReadAsync(offsetBytes, buffer).IsCompletedSuccessfully;
#pragma warning restore CA2012
        if (!inline)
        {
            throw new InvalidOperationException("a hit completes inline");
        }
    }

    [Fact]
    public void SecondRead_IsAHit_SameBytes_NoParentRead()
    {
        string path = ParentFile("p", (Granule * 3) + 4096);
        byte[] file = File.ReadAllBytes(path);
        var cache = new ParentCache(64 << 20);
        var parent = new FileImage(path);
        using BlockCacheFilter bc = BlockCacheFilter.Open(parent, cache);

        // Inside a granule, across two, the whole of one, and the short last one.
        (long Offset, int Length)[] reads = [(4096, 4096), (Granule - 512, 1024), (Granule, Granule), ((Granule * 3) + 512, 3584)];
        foreach ((long offset, int length) in reads)
        {
            DiskContent.AssertSame(file.AsSpan((int)offset, length).ToArray(), Read(bc, offset, length), $"miss at {offset}");
        }

        long parentBytes = parent.BytesRead;
        foreach ((long offset, int length) in reads)
        {
            DiskContent.AssertSame(file.AsSpan((int)offset, length).ToArray(), Read(bc, offset, length), $"hit at {offset}");
        }

        Assert.Equal(parentBytes, parent.BytesRead);
        Assert.Equal(3, bc.Set.EntryCount);
        Assert.Equal(2 + 5, bc.Hits);
        Assert.True(cache.StoredBytes < cache.RawBytes * 6 / 10, $"stored {cache.StoredBytes} of {cache.RawBytes} raw");
    }

    /// <summary>Granules whose LZ4 matches cross every 4 KiB boundary: words with noise, long runs, and a short last granule.</summary>
    public static TheoryData<string, int> Granules() => new() { { "words", Granule }, { "runs", Granule }, { "words", Granule - 1536 } };

    [Theory]
    [MemberData(nameof(Granules))]
    public void TryCopy_PartialDecodes_EqualTheFullDecode_AtEveryOffset(string kind, int rawLength)
    {
        byte[] raw = new byte[rawLength];
        var random = new Random(rawLength);
        byte[] words = Encoding.ASCII.GetBytes("usr lib share bin include locale doc man python3 perl ");
        for (int i = 0; i < raw.Length; i++)
        {
            raw[i] = kind == "runs"
                ? (i / 700 % 3 == 0 ? (byte)0 : i / 700 % 3 == 1 ? (byte)(i / 700) : words[random.Next(words.Length)])
                : random.Next(8) == 0 ? (byte)random.Next(256) : words[i % words.Length];
        }

        CacheEntry entry = BlockCacheFilter.Compress(raw);
        Assert.True(entry.Compressed);

        // Every 4 KiB piece and every run of pieces up to the granule's end, then odd offsets and lengths.
        var pieces = new List<(int Within, int Length)>();
        for (int within = 0; within < rawLength; within += 4096)
        {
            for (int end = within + 4096; end < rawLength + 4096; end += 4096)
            {
                pieces.Add((within, Math.Min(end, rawLength) - within));
            }
        }

        pieces.AddRange([(0, 1), (1, 1), (511, 513), (4095, 2), (4097, 4095), (rawLength - 1, 1), (1, rawLength - 1), (700, 1400)]);
        for (int i = 0; i < 200; i++)
        {
            int within = random.Next(rawLength);
            pieces.Add((within, 1 + random.Next(rawLength - within)));
        }

        foreach ((int within, int length) in pieces)
        {
            byte[] target = new byte[length];
            Assert.True(BlockCacheFilter.TryCopy(entry, within, target), $"{kind}: [{within}, +{length})");
            DiskContent.AssertSame(raw.AsSpan(within, length).ToArray(), target, $"{kind}: [{within}, +{length})");
        }

        Assert.False(BlockCacheFilter.TryCopy(entry, 1, new byte[rawLength]));
    }

    [Fact]
    public void MayBlock_ReadOfHeldGranules_IsFalse_ElseTheParentsAnswer()
    {
        string path = ParentFile("p", Granule * 4);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), new ParentCache(64 << 20));

        // The file image says any request may block (a parent whose metadata is not loaded says the same).
        Assert.True(bc.MayBlock(BlockOperation.Read, 4096, 4096));
        Read(bc, 0, Granule * 2);

        Assert.False(bc.MayBlock(BlockOperation.Read, 4096, 4096));
        Assert.False(bc.MayBlock(BlockOperation.Read, Granule - 512, 1024));
        Assert.False(bc.MayBlock(BlockOperation.Read, 0, Granule * 2));
        Assert.True(bc.MayBlock(BlockOperation.Read, Granule, Granule + 512));
        Assert.True(bc.MayBlock(BlockOperation.Read, Granule * 3, 4096));
        Assert.True(bc.MayBlock(BlockOperation.Flush, 0, 0));
    }

    [Fact]
    public void TwoVbdsOverOneParent_ShareOneSet_SecondOnlyHits()
    {
        string path = ParentFile("p", Granule * 8);
        var cache = new ParentCache(64 << 20);
        var first = new FileImage(path);
        var second = new FileImage(path);
        using BlockCacheFilter a = BlockCacheFilter.Open(first, cache);
        using BlockCacheFilter b = BlockCacheFilter.Open(second, cache);

        Assert.Same(a.Set, b.Set);
        Assert.Equal(2, a.Set.References);
        Read(a, 0, Granule * 8);
        Read(b, 0, Granule * 8);

        Assert.Equal(0, second.BytesRead);
        Assert.Equal(8, b.Hits);
        Assert.Equal(0, b.Misses);
        Assert.Equal(8, a.Set.EntryCount);
        Assert.Equal(1, cache.Sets);
    }

    [Fact]
    public void IncompressibleGranules_AreStoredRaw_AndReadBack()
    {
        string path = ParentFile("random", Granule * 2, compressible: false);
        var cache = new ParentCache(64 << 20);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);

        Read(bc, 0, Granule * 2);

        Assert.All(bc.Set.Entries.Values, e => Assert.False(e.Compressed));
        Assert.Equal((2 * Granule) + (2 * ParentCache.EntryOverheadBytes), cache.StoredBytes);
        DiskContent.AssertSame(File.ReadAllBytes(path).AsSpan(100, Granule + 1000).ToArray(), Read(bc, 100, Granule + 1000), "raw hit");
    }

    [Fact]
    public void Budget_IsNeverExceeded_AndAReReadWorkingSetOutlivesAScan()
    {
        // Incompressible, so each entry costs a granule: the budget holds 8.
        string path = ParentFile("big", Granule * 64, compressible: false);
        long budget = 8L * (Granule + ParentCache.EntryOverheadBytes);
        var cache = new ParentCache(budget);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);

        // The boot set: four granules read three times each.
        for (int round = 0; round < 3; round++)
        {
            for (int g = 0; g < 4; g++)
            {
                Read(bc, (long)g * Granule, 4096);
            }
        }

        // A one-pass scan of 40 other granules.
        for (int g = 10; g < 50; g++)
        {
            Read(bc, (long)g * Granule, 4096);
            Assert.True(cache.StoredBytes <= budget, $"stored {cache.StoredBytes} over the budget {budget}");
        }

        long hits = bc.Hits;
        Assert.Equal("0,1,2,3", string.Join(',', bc.Set.Entries.Keys.Where(k => k < 4).Order()));
        for (int g = 0; g < 4; g++)
        {
            Read(bc, (long)g * Granule, 4096);
        }

        Assert.Equal(hits + 4, bc.Hits);
        Assert.True(cache.Evictions >= 36, $"{cache.Evictions} evictions");
    }

    [Fact]
    public void ParentChangedWhilePaused_IsDroppedOnResume_UnchangedStaysWarm()
    {
        string path = ParentFile("p", Granule * 2);
        var cache = new ParentCache(64 << 20);
        ParentCacheSet before;
        using (BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache))
        {
            Read(bc, 0, Granule * 2);
            before = bc.Set;
        }

        // Paused and resumed with nothing changed: the same set, already warm.
        using (BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache))
        {
            Assert.Same(before, bc.Set);
            Read(bc, 0, Granule);
            Assert.Equal(1, bc.Hits);
        }

        // Changed while paused (as vhd-util coalesce writes into a parent): same size, same inode.
        byte[] changed = File.ReadAllBytes(ParentFile("q", Granule * 2, seed: 7));
        using (FileStream f = new(path, FileMode.Open, FileAccess.Write))
        {
            f.Write(changed);
        }

        using (BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache))
        {
            Assert.NotSame(before, bc.Set);
            Assert.Equal(1, cache.Sets);
            DiskContent.AssertSame(changed, Read(bc, 0, Granule * 2), "after the change");
            Assert.Equal(0, bc.Hits);
        }
    }

    [Fact]
    public void Hit_AllocatesNothing()
    {
        // 16 granules held: the hot tier may take two (an eighth).
        string path = ParentFile("p", Granule * 16);
        var cache = new ParentCache(64 << 20);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);
        byte[] whole = new byte[Granule];
        byte[] part = new byte[4096];
        Read(bc, 0, Granule * 16);
        HitInline(bc, Granule * 2, whole);
        HitInline(bc, (Granule * 3) + 512, part);

        // Decoding hits, below the count that promotes.
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < ParentCache.PromoteAfterHits - 2; i++)
        {
            HitInline(bc, Granule * 2, whole);
            HitInline(bc, (Granule * 3) + 512, part);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(0, cache.HotBytes);

        // Promoted (one array each), then hot hits: copies.
        HitInline(bc, Granule * 2, whole);
        HitInline(bc, (Granule * 3) + 512, part);
        Assert.Equal(2 * Granule, cache.HotBytes);
        long hotHits = bc.HotHits;
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            HitInline(bc, Granule * 2, whole);
            HitInline(bc, (Granule * 3) + 512, part);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(hotHits + 200, bc.HotHits);
    }

    [Fact]
    public void HotTier_HoldsAnEighth_CountsInStoredBytes_DemotesTheLeastUsed_AndReadsTheFile()
    {
        string path = ParentFile("p", Granule * 32);
        byte[] file = File.ReadAllBytes(path);
        var cache = new ParentCache(64 << 20);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);
        Read(bc, 0, Granule * 32);
        long compressed = cache.StoredBytes;
        long cap = cache.RawBytes / ParentCache.HotShare;

        // Granules 0-3 fill the tier (a quarter of 32 granules would be 8: the cap is 4).
        for (int i = 0; i < ParentCache.PromoteAfterHits; i++)
        {
            for (int g = 0; g < 4; g++)
            {
                DiskContent.AssertSame(file.AsSpan((g * Granule) + 1024, 4096).ToArray(), Read(bc, (g * Granule) + 1024, 4096), $"granule {g}");
            }
        }

        Assert.Equal(cap, cache.HotBytes);
        Assert.Equal(compressed + cap, cache.StoredBytes);
        Assert.Equal(cache.StoredBytes, bc.Set.StoredBytes);

        // Granule 0 stays in use while 10-13 are promoted: they demote 1-3 and then each other, never granule 0.
        for (int g = 10; g < 14; g++)
        {
            for (int i = 0; i < ParentCache.PromoteAfterHits; i++)
            {
                Read(bc, 0, 4096);
                DiskContent.AssertSame(file.AsSpan(g * Granule, Granule).ToArray(), Read(bc, g * Granule, Granule), $"granule {g}");
                Assert.True(cache.HotBytes <= cap, $"hot {cache.HotBytes} over {cap}");
            }
        }

        Assert.NotNull(bc.Set.Entries[0].Hot);
        Assert.Equal(3, Enumerable.Range(1, 13).Count(g => bc.Set.Entries[g].Hot is not null));
        Assert.Equal(compressed + cache.HotBytes, cache.StoredBytes);
        DiskContent.AssertSame(file, Read(bc, 0, file.Length), "all of it, hot and not");
    }

    [Fact]
    public void HotTier_NeverLiftsStoredBytesOverTheirShareOfTheRaw()
    {
        // Granules that compress to about half: the tier may only spend what keeps stored bytes within 60 % of raw.
        string path = _scratch.File("p");
        byte[] data = new byte[Granule * 32];
        new Random(3).NextBytes(data);
        for (int i = 0; i < data.Length; i += 128)
        {
            data.AsSpan(i, 64).Fill((byte)(i >> 14));
        }

        File.WriteAllBytes(path, data);
        var cache = new ParentCache(64 << 20);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);
        Read(bc, 0, data.Length);
        Assert.All(bc.Set.Entries.Values, e => Assert.True(e.Compressed));
        Assert.InRange(cache.StoredBytes * 100 / cache.RawBytes, 45, 59);

        for (int i = 0; i < ParentCache.PromoteAfterHits; i++)
        {
            for (int g = 0; g < 32; g++)
            {
                DiskContent.AssertSame(data.AsSpan(g * Granule, 4096).ToArray(), Read(bc, g * Granule, 4096), $"granule {g}");
            }
        }

        Assert.True(cache.StoredBytes * 100 <= cache.RawBytes * ParentCache.HotStoredPercent, $"stored {cache.StoredBytes} of {cache.RawBytes} raw");
        Assert.InRange(cache.HotBytes, Granule, (cache.RawBytes / ParentCache.HotShare) - 1);
    }

    [Fact]
    public async Task ParallelReaders_UnderEvictionChurn_AlwaysReadTheFile()
    {
        string path = ParentFile("p", Granule * 32);
        byte[] file = File.ReadAllBytes(path);
        var cache = new ParentCache(6L * (Granule + ParentCache.EntryOverheadBytes));
        var parent = new FileImage(path);
        using BlockCacheFilter bc = BlockCacheFilter.Open(parent, cache);

        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            var random = new Random(t);
            byte[] buffer = new byte[8192];
            for (int i = 0; i < 500; i++)
            {
                int offset = random.Next((file.Length - buffer.Length) / 512) * 512;
                await bc.ReadAsync(offset, buffer);
                Assert.True(buffer.AsSpan().SequenceEqual(file.AsSpan(offset, buffer.Length)), $"thread {t} read {i} at {offset}");
            }
        })));

        Assert.True(cache.StoredBytes <= cache.BudgetBytes);
        Assert.Equal(cache.Entries, bc.Set.EntryCount);
        Assert.Equal(cache.StoredBytes, bc.Set.StoredBytes);
    }

    [Fact]
    public async Task ParallelReaders_PromotingAndEvicting_AlwaysReadTheFile_AndKeepTheCounts()
    {
        // 256 granules that compress to about a quarter; a budget of 20 raw granules holds some 90 of them, and its
        // eighth two hot copies: skewed readers promote the low granules while the tail keeps evicting.
        string path = ParentFile("p", Granule * 256);
        byte[] file = File.ReadAllBytes(path);
        var cache = new ParentCache(20L * Granule);
        using BlockCacheFilter bc = BlockCacheFilter.Open(new FileImage(path), cache);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            var random = new Random(t);
            byte[] buffer = new byte[4096];
            for (int i = 0; i < 2000; i++)
            {
                double r = random.NextDouble();
                int offset = ((int)(256 * r * r * r) * Granule) + (random.Next(4) * 4096);
                await bc.ReadAsync(offset, buffer);
                Assert.True(buffer.AsSpan().SequenceEqual(file.AsSpan(offset, buffer.Length)), $"thread {t} read {i} at {offset}");
            }
        })));

        Assert.True(bc.HotHits > 0, "nothing was promoted");
        Assert.True(cache.Evictions > 0, "nothing was evicted");
        Assert.True(cache.StoredBytes <= cache.BudgetBytes);
        Assert.True(cache.HotBytes <= cache.RawBytes / ParentCache.HotShare, $"hot {cache.HotBytes} of {cache.RawBytes} raw");
        Assert.Equal(cache.StoredBytes, bc.Set.StoredBytes);
        Assert.Equal(cache.HotBytes, bc.Set.Entries.Values.Sum(e => e.Hot is null ? 0L : e.RawLength));
    }
}
