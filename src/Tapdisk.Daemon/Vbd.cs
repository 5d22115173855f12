using Tapdisk.Abi;
using Tapdisk.Blkif;
using Tapdisk.Control;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Filters.Mirror;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>One virtual block device (a minor): its marker lock, its image chain and its NBD endpoints.</summary>
internal sealed class Vbd
{
    public Vbd(int minor, SafeFdHandle markerLock)
    {
        Minor = minor;
        MarkerLock = markerLock;
    }

    public int Minor { get; }

    /// <summary>The flock'ed minor marker, held while attached so tap-ctl free refuses (control-xen.md 5.5).</summary>
    public SafeFdHandle MarkerLock { get; }

    public VbdState State { get; set; }

    /// <summary>The params string as given to OPEN or RESUME ("type:/path"); null when not open.</summary>
    public string? Params { get; set; }

    public TapdiskOpenFlags Flags { get; set; }

    /// <summary>The CBT log from OPEN -C or RESUME -c, exactly as given; null without one (a RESUME without -c drops it).</summary>
    public string? LogPath { get; set; }

    /// <summary>
    /// The secondary image ("type:path", -2) every stack of this VBD is opened with; null without one. It persists
    /// across pause and resume (blktap keeps the VBD's secondary name and reopens it with the chain) until a RESUME
    /// with -2 replaces it or removes it (-2 null).
    /// </summary>
    public string? SecondaryParams { get; set; }

    public SecondaryMode SecondaryMode { get; set; } = SecondaryMode.Mirror;

    /// <summary>nbd_mirror_failed, the ENOSPC redirect count and map: from OPEN to CLOSE, across the stacks.</summary>
    public SecondaryState? SecondaryState { get; set; }

    /// <summary>The VBD's block stack, gate and counters for both frontends: from OPEN to CLOSE, across pause and resume.</summary>
    public BlockBackend? Backend { get; set; }

    /// <summary>False while paused: the stack's files are closed (for the toolstack's snapshot) until RESUME reopens them.</summary>
    public bool ChainOpen { get; set; }

    /// <summary>The key from OPEN -E, kept (pinned, zeroed on close) because RESUME reopens the chain without one.</summary>
    public VhdKey? Key { get; set; }

    /// <summary>With OPEN's prt_devnum (tap-ctl -e): the NBD socket of the VBD serving the leaf's parent, kept for RESUME.</summary>
    public string? ParentSocket { get; set; }

    public List<IAsyncDisposable> Endpoints { get; } = [];

    /// <summary>The statistics pages published in /dev/shm for this VBD (TapdiskHost.SharedStats.cs).</summary>
    public VbdSharedStats SharedStats { get; } = new();

    /// <summary>Xen rings connected by XENBLKIF_CONNECT (tapback connects one; the list allows more).</summary>
    public List<BlkifRing> Rings { get; } = [];

    /// <summary>Disk info cached at OPEN: valid while paused (DISK_INFO), compared at RESUME.</summary>
    public ulong Sectors { get; set; }

    public uint SectorSize { get; set; } = 512;

    public uint Info { get; set; }

    public bool IsOpen => Params is not null;
}
