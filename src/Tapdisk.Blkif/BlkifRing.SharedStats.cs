using System.Diagnostics;
using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary>
/// The ring's published statistics (control-xen.md 1, Part II 4.1): the frontend page (td3-&lt;pid&gt;/vbd-&lt;domid&gt;-&lt;devid&gt;,
/// struct stats) and blkback's page (vbd3-&lt;domid&gt;-&lt;devid&gt;/statistics), counted on the ring thread as requests are
/// taken in and answered: atomics into the pages, no allocation, no lock. oo_reqs / st_oo_req (a request waiting for
/// a free request descriptor) stay zero: the ring has one slot per ring entry, so a request never waits for one.
/// </summary>
public sealed unsafe partial class BlkifRing
{
    private TdStatsPage? _frontendStats;
    private BlkbackStatsPage? _ringStats;

    /// <summary>td3-&lt;pid&gt;/vbd-&lt;domid&gt;-&lt;devid&gt;; set by the owner after connect, cleared before disconnect.</summary>
    public TdStatsPage? FrontendStats
    {
        get => Volatile.Read(ref _frontendStats);
        set => Volatile.Write(ref _frontendStats, value);
    }

    /// <summary>vbd3-&lt;domid&gt;-&lt;devid&gt;/statistics.</summary>
    public BlkbackStatsPage? RingStats
    {
        get => Volatile.Read(ref _ringStats);
        set => Volatile.Write(ref _ringStats, value);
    }

    /// <summary>The ring's indexes as xen-ringwatch reads them from io_ring (a racy snapshot, for display only).</summary>
    public BlkifRingIndexes GetIndexes() => new(
        (uint)_geometry.SlotCount,
        Volatile.Read(ref _sring->ReqProd),
        Volatile.Read(ref _reqCons),
        Volatile.Read(ref _sring->ReqEvent),
        Volatile.Read(ref _sring->RspProd),
        Volatile.Read(ref _rspProdPvt),
        Volatile.Read(ref _sring->RspEvent));

    private void CountReceived(BlkifRequestSlot slot, byte operation)
    {
        TdStatsPage? frontend = Volatile.Read(ref _frontendStats);
        BlkbackStatsPage? ring = Volatile.Read(ref _ringStats);
        if (frontend is null && ring is null)
        {
            return;
        }

        switch (operation)
        {
            case BlkifConstants.OpRead:
                frontend?.Submitted(write: false);
                ring?.ReadReceived();
                break;
            case BlkifConstants.OpWrite:
                frontend?.Submitted(write: true);
                ring?.WriteReceived();
                break;
            case BlkifConstants.OpWriteBarrier or BlkifConstants.OpFlushDiskcache:
                ring?.FlushReceived();
                break;
            case BlkifConstants.OpDiscard:
                ring?.DiscardReceived();
                break;
        }

        slot.StartTimestamp = Stopwatch.GetTimestamp();
    }

    private void CountFinished(BlkifRequestSlot slot, short status)
    {
        if (slot.StartTimestamp == 0 || slot.Operation is not (BlkifConstants.OpRead or BlkifConstants.OpWrite))
        {
            return;
        }

        bool write = slot.Operation == BlkifConstants.OpWrite;
        TdStatsPage? frontend = Volatile.Read(ref _frontendStats);
        if (status != BlkifConstants.RspOkay)
        {
            frontend?.Failed();
            return;
        }

        long sectors = slot.LengthBytes / Tapdisk.Storage.IoLimits.SectorSize;
        long microseconds = (long)Stopwatch.GetElapsedTime(slot.StartTimestamp).TotalMicroseconds;
        frontend?.Completed(write, sectors, microseconds);
        Volatile.Read(ref _ringStats)?.Completed(write, sectors, microseconds);
    }
}
