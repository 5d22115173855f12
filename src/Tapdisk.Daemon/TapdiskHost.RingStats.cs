using Tapdisk.Abi;
using Tapdisk.Blkif;

namespace Tapdisk.Daemon;

/// <summary>
/// A ring's pages, from XENBLKIF_CONNECT to XENBLKIF_DISCONNECT (control-xen.md 1): td3-&lt;pid&gt;/vbd-&lt;domid&gt;-&lt;devid&gt;
/// (struct stats, version 1, what xentop reads) and vbd3-&lt;domid&gt;-&lt;devid&gt;/{statistics,io_ring} (xen-ringwatch),
/// io_ring refreshed every 5 s.
/// </summary>
internal sealed partial class TapdiskHost
{
    private static readonly TimeSpan s_ioRingRefresh = TimeSpan.FromSeconds(5);

    private readonly Dictionary<BlkifRing, RingPages> _ringPages = [];
    private Timer? _ioRingTimer;

    private sealed record RingPages(TdStatsPage? Frontend, BlkbackStatsPage? Statistics, TextPage? IoRing, string Directory);

    private void PublishRingStats(BlkifRing ring)
    {
        string dir = SharedStatsPaths.RingDirectory(ring.Domid, ring.Devid);
        TdStatsPage? frontend = _sharedStats
            ? TryCreate(SharedStatsPaths.Vbd(Pid, ring.Domid, ring.Devid), static path => new TdStatsPage(path, TdStats.VbdVersion))
            : null;
        BlkbackStatsPage? statistics = TryCreate(Path.Combine(dir, "statistics"), path =>
        {
            // 0700 where blktap uses 0600, for the reason given for metrics/ (TapdiskHost.SharedStats.cs).
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return new BlkbackStatsPage(path);
        });
        TextPage? ioRing = TryCreate(Path.Combine(dir, "io_ring"), path => new TextPage(path, path + "~", BlkifIoRingText.Format(ring.GetIndexes())));
        ring.FrontendStats = frontend;
        ring.RingStats = statistics;
        lock (_lock)
        {
            _ringPages[ring] = new RingPages(frontend, statistics, ioRing, dir);
            _ioRingTimer ??= new Timer(_ => RefreshIoRings(), null, s_ioRingRefresh, s_ioRingRefresh);
        }
    }

    /// <summary>DISCONNECT (and CLOSE): the pages go before the ring drains, as blktap removes them from a ring it marks dead.</summary>
    private void UnpublishRingStats(BlkifRing ring)
    {
        RingPages? pages;
        lock (_lock)
        {
            _ringPages.Remove(ring, out pages);
            if (_ringPages.Count == 0)
            {
                _ioRingTimer?.Dispose();
                _ioRingTimer = null;
            }
        }

        ring.FrontendStats = null;
        ring.RingStats = null;
        if (pages is null)
        {
            return;
        }

        pages.Frontend?.Remove();
        pages.Statistics?.Remove();
        pages.IoRing?.Remove();
        try
        {
            Directory.Delete(pages.Directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning($"cannot remove {pages.Directory}: {e.Message}");
        }
    }

    private void RefreshIoRings()
    {
        KeyValuePair<BlkifRing, RingPages>[] rings;
        lock (_lock)
        {
            rings = [.. _ringPages];
        }

        foreach ((BlkifRing ring, RingPages pages) in rings)
        {
            try
            {
                pages.IoRing?.Write(BlkifIoRingText.Format(ring.GetIndexes()));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Removed under us (a disconnect racing the timer) or /dev/shm trouble: the next refresh tries again.
                _log.Debug($"cannot refresh {pages.Directory}/io_ring: {e.Message}");
            }
        }
    }
}
