namespace Tapdisk.Blkif;

/// <summary>Backend limits the toolstack advertises in XenStore; the ring enforces the same numbers.</summary>
public sealed class BlkifRingOptions
{
    /// <summary>feature-max-indirect-segments; 0 disables indirect requests (answered EOPNOTSUPP). At most 8 pages x 512.</summary>
    public int MaxIndirectSegments { get; init; } = 32;

    /// <summary>Bounded retries of a grant copy that reports GNTST_eagain (page paged out).</summary>
    public int GrantCopyRetries { get; init; } = 3;

    /// <summary>How long Disconnect waits for requests still at the image before leaving the ring to finish alone.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
