namespace Tapdisk.Filters.Mirror;

/// <summary>
/// What a VBD's secondary leaves behind across its stacks (pause closes the stack, resume builds a new one): whether
/// the mirror failed (stats nbd_mirror_failed, which xapi reads), the sectors redirected after ENOSPC (stats
/// FIXME_enospc_redirect_count), and which sectors the secondary holds in place of the primary.
/// </summary>
public sealed class SecondaryState
{
    private int _mirrorFailed;
    private long _redirectedSectors;
    private RedirectMap? _redirect;

    /// <param name="enospcSignalPath">blktap's signal file (/run/tapdisk-enospc&lt;minor&gt;), created when the primary runs out of space.</param>
    public SecondaryState(string? enospcSignalPath)
    {
        EnospcSignalPath = enospcSignalPath;
    }

    public string? EnospcSignalPath { get; }

    /// <summary>1 once the secondary failed and was dropped (or an nbd secondary could not be opened); stats nbd_mirror_failed.</summary>
    public int MirrorFailed => Volatile.Read(ref _mirrorFailed);

    /// <summary>Sectors changed on the secondary in place of the full primary; stats FIXME_enospc_redirect_count.</summary>
    public long RedirectedSectors => Volatile.Read(ref _redirectedSectors);

    /// <summary>Whether the secondary holds data the primary does not (it can then never be dropped or replaced).</summary>
    public bool HoldsRedirectedData => Volatile.Read(ref _redirect) is not null;

    internal RedirectMap? Redirect => Volatile.Read(ref _redirect);

    /// <summary>Records that the secondary is gone (failed, or could not be opened): the mirror is incomplete from now on.</summary>
    public void MarkMirrorFailed() => Volatile.Write(ref _mirrorFailed, 1);

    internal void AddRedirected(long sectors) => Interlocked.Add(ref _redirectedSectors, sectors);

    /// <summary>Starts redirecting; true for the one caller that did (it signals), false if another had.</summary>
    internal bool StartRedirect(long sizeBytes, out RedirectMap map)
    {
        var created = new RedirectMap(sizeBytes);
        RedirectMap? existing = Interlocked.CompareExchange(ref _redirect, created, null);
        map = existing ?? created;
        return existing is null;
    }
}
