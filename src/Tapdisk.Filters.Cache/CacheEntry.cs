namespace Tapdisk.Filters.Cache;

/// <summary>One cached granule: its bytes (LZ4 block or raw) never change once published; only the use count moves.</summary>
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
