using Tapdisk.Abi;

namespace Tapdisk.Daemon;

/// <summary>One VBD's published pages: the VDI and legacy pages live from OPEN/RESUME to PAUSE/CLOSE, the NBD pages from OPEN to CLOSE.</summary>
internal sealed class VbdSharedStats
{
    public TdStatsPage? Vdi { get; set; }

    public ReservedPage? Tap { get; set; }

    public TdStatsPage? Nbd { get; set; }

    public TdStatsPage? NbdOld { get; set; }
}
