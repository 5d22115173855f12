namespace Tapdisk.Blkif;

/// <summary>A snapshot of one ring's counters, in the shape of tapdisk's stats "xenbus" object (control-xen.md 6.3).</summary>
public readonly record struct BlkifRingStats(
    long RequestsIn,
    long ResponsesOut,
    long KicksIn,
    long KicksOut,
    long ErrorsMessage,
    long ErrorsMap,
    long ErrorsVbd,
    long ErrorsImage);
