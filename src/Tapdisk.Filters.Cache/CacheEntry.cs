namespace Tapdisk.Filters.Cache;

/// <summary>
/// One cached granule: its bytes (LZ4 block or raw) never change once published; the use counts move, and a hot copy
/// (the same bytes decoded) may come and go.
/// </summary>
internal sealed class CacheEntry(byte[] data, int rawLength, bool compressed)
{
    /// <summary>CLOCK's use count, 0..<see cref="MaxUses"/>: raised by hits, lowered by the sweeping hand.</summary>
    public const int MaxUses = 3;

    public int Uses;

    public byte[] Data { get; } = data;

    public int RawLength { get; } = rawLength;

    public bool Compressed { get; } = compressed;

    // Owned by ParentCache under its lock.
    public ParentCacheSet? Set { get; set; }

    public long Granule { get; set; }

    /// <summary>Its CLOCK slot once protected; -1 while in probation.</summary>
    public int Slot { get; set; }

    /// <summary>Evicted or dropped (a probation entry may still sit in the queue until the head reaches it).</summary>
    public bool Removed { get; set; }

    /// <summary>The granule decoded, while it is in the hot tier (published whole, never written after; demotion drops it).</summary>
    public byte[]? Hot;

    /// <summary>The hot tier's CLOCK bit: set by hits on <see cref="Hot"/>, cleared by the hot tier's hand.</summary>
    public int HotUsed;

    /// <summary>Hits that decoded it since it was stored or last demoted: <see cref="ParentCache.PromoteAfterHits"/> promote it.</summary>
    public int DecodedHits;

    /// <summary>Its slot in the hot tier, or -1. Owned by ParentCache under its lock.</summary>
    public int HotSlot { get; set; } = -1;

    public void Touch()
    {
        // A relaxed read-then-store: a lost increment between two racing hits costs nothing but one step of age.
        int uses = Volatile.Read(ref Uses);
        if (uses < MaxUses)
        {
            Volatile.Write(ref Uses, uses + 1);
        }
    }
}
