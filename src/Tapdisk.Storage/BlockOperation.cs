namespace Tapdisk.Storage;

/// <summary>What a request does, for validation and accounting (NBD commands and blkif operations map onto these).</summary>
public enum BlockOperation
{
    Read,
    Write,
    Flush,
    Trim,
    Zero,

    /// <summary>An allocation-map query (NBD BLOCK_STATUS) or an advisory prefetch (NBD CACHE): read-only, moves no data.</summary>
    Query,
}
