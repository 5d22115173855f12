namespace Tapdisk.Nbd;

/// <summary>How a connection starts.</summary>
public enum NbdHandshakeStyle
{
    /// <summary>Fixed newstyle with option haggling: every listening endpoint.</summary>
    FixedNewstyle,

    /// <summary>
    /// Oldstyle: size and flags at once, the single (default) export, no options and so no structured replies.
    /// Only blktap's <c>nbdserver&lt;pid&gt;.&lt;minor&gt;</c> fd receiver speaks it.
    /// </summary>
    Oldstyle,
}
