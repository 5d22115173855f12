using Tapdisk.Abi;
using Tapdisk.Nbd;

namespace Tapdisk.Daemon;

/// <summary>
/// The statistics pages xcp-rrdd's iostat plugin and xentop read (control-xen.md 1): created and removed at the moments
/// blktap creates and removes them, counted live by the backend, the NBD servers and the rings. A page that cannot be
/// created is logged and skipped: statistics never stop a disk from being served.
/// </summary>
internal sealed partial class TapdiskHost
{
    private bool _sharedStats;

    /// <summary>At start-up: td3-&lt;pid&gt;, mode 0700, emptied if a dead process with our pid left one behind.</summary>
    public void StartSharedStats()
    {
        string dir = SharedStatsPaths.ProcessDirectory(Pid);
        try
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }

            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            _sharedStats = true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // blktap exits here; we serve without statistics pages rather than refuse to start.
            _log.Error($"cannot create {dir}: {e.Message}; statistics pages will not be published");
        }
    }

    /// <summary>At exit: td3-&lt;pid&gt; and everything left in it.</summary>
    public void StopSharedStats()
    {
        if (!_sharedStats)
        {
            return;
        }

        _sharedStats = false;
        try
        {
            Directory.Delete(SharedStatsPaths.ProcessDirectory(Pid), recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error($"cannot remove {SharedStatsPaths.ProcessDirectory(Pid)}: {e.Message}");
        }
    }

    /// <summary>OPEN and RESUME: vdi-&lt;minor&gt; (counted by the backend) and metrics/tap-&lt;pid&gt;-&lt;minor&gt;.</summary>
    private void PublishVdiStats(Vbd vbd)
    {
        if (!_sharedStats || vbd.Backend is not { } backend)
        {
            return;
        }

        VbdSharedStats pages = vbd.SharedStats;
        pages.Vdi ??= TryCreate(SharedStatsPaths.Vdi(Pid, vbd.Minor), static path => new TdStatsPage(path));
        backend.StatsPage = pages.Vdi;
        // metrics/tap-<pid>-<minor> stays zero, as blktap's does: its tapdisk-vbd.c creates this page at OPEN/RESUME and
        // nothing writes to it (its td_vbd_rrd keeps last/last_errors that no code reads). xcp-rrdd's plugin discovery
        // skips tap-* files as not valid RRDs. An RRD writer for it (rrdd plugin protocol v1 every 5 s) appears only in a
        // development fork, not in xapi-project's or xcp-ng's tree, so filling the page would be a difference, not a match.
        pages.Tap ??= TryCreate(SharedStatsPaths.Tap(Pid, vbd.Minor), path =>
        {
            // blktap makes metrics/ with mode 0600, usable only because it runs as root; 0700 gives root the same
            // access and lets an unprivileged tapdisk (tests, containers) publish too.
            Directory.CreateDirectory(SharedStatsPaths.MetricsDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return new ReservedPage(path);
        });
    }

    /// <summary>PAUSE and CLOSE: the VDI's pages go (a resume publishes new, zeroed ones, as blktap's do).</summary>
    private static void UnpublishVdiStats(Vbd vbd)
    {
        VbdSharedStats pages = vbd.SharedStats;
        if (vbd.Backend is { } backend)
        {
            backend.StatsPage = null;
        }

        pages.Vdi?.Remove();
        pages.Vdi = null;
        pages.Tap?.Remove();
        pages.Tap = null;
    }

    /// <summary>OPEN: nbd-&lt;minor&gt; for the fixed-newstyle server, nbd-old-&lt;minor&gt; for the "old" one.</summary>
    private void PublishNbdStats(Vbd vbd, NbdServer newServer, NbdServer oldServer)
    {
        if (!_sharedStats)
        {
            return;
        }

        VbdSharedStats pages = vbd.SharedStats;
        pages.Nbd ??= TryCreate(SharedStatsPaths.Nbd(Pid, vbd.Minor), static path => new TdStatsPage(path));
        pages.NbdOld ??= TryCreate(SharedStatsPaths.NbdOld(Pid, vbd.Minor), static path => new TdStatsPage(path));
        newServer.StatsPage = pages.Nbd;
        oldServer.StatsPage = pages.NbdOld;
    }

    /// <summary>CLOSE: every page of the VBD.</summary>
    private static void UnpublishAllStats(Vbd vbd)
    {
        UnpublishVdiStats(vbd);
        VbdSharedStats pages = vbd.SharedStats;
        pages.Nbd?.Remove();
        pages.Nbd = null;
        pages.NbdOld?.Remove();
        pages.NbdOld = null;
    }

    private T? TryCreate<T>(string path, Func<string, T> create)
        where T : StatsPage
    {
        try
        {
            return create(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error($"cannot publish {path}: {e.Message}");
            return null;
        }
    }
}
