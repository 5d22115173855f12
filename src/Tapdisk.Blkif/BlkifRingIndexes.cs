namespace Tapdisk.Blkif;

/// <summary>A ring's producer/consumer/event indexes, in the shape of blktap's io_ring page (control-xen.md Part II 4.1).</summary>
public readonly record struct BlkifRingIndexes(uint Entries, uint ReqProd, uint ReqCons, uint ReqEvent, uint RspProd, uint RspProdPvt, uint RspEvent);
