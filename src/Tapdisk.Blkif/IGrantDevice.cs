using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary>What the ring needs from gntdev: map the ring pages, and grant-copy request data. Real: <see cref="XenGrantDevice"/>.</summary>
public interface IGrantDevice : IDisposable
{
    /// <summary>Maps the pages as one contiguous range; throws <see cref="ErrnoIOException"/> (EINVAL for any bad ref).</summary>
    MappedRegion MapGrantRefs(uint domid, ReadOnlySpan<uint> refs, bool writable);

    /// <summary>One GRANT_COPY over all segments; returns 0 or the errno. Per-segment GNTST codes land in each Status.</summary>
    int GrantCopy(Span<GrantCopySegment> segments);
}
