namespace Tapdisk.TapCtl;

/// <summary>What create/open put in an OPEN request (control-xen.md 3.3, 5.2).</summary>
internal sealed class VbdParams
{
    public string? Args { get; set; }

    public TapdiskOpenFlagsBuilder Flags { get; } = new();

    /// <summary>-e: the minor whose tapdisk serves the parent chain; -1 = none.</summary>
    public int ParentMinor { get; set; } = -1;

    public string? Secondary { get; set; }

    public string? LogPath { get; set; }

    public ushort RequestTimeoutSeconds { get; set; }

    public byte[]? Key { get; set; }
}
