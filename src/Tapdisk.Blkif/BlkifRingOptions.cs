namespace Tapdisk.Blkif;

/// <summary>Backend limits the toolstack advertises in XenStore; the ring enforces the same numbers.</summary>
public sealed class BlkifRingOptions
{
    /// <summary>
    /// The most segments an indirect request may carry; 0 refuses indirect requests (EOPNOTSUPP). At most 8 pages x 512.
    /// 256 as Linux blkback: tapback advertises feature-max-indirect-segments up to this, and the ring must accept what it advertised.
    /// </summary>
    public int MaxIndirectSegments { get; init; } = 256;

    /// <summary>Bounded retries of a grant copy that reports GNTST_eagain (page paged out).</summary>
    public int GrantCopyRetries { get; init; } = 3;

    /// <summary>How long Disconnect waits for requests still at the image before leaving the ring to finish alone.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
