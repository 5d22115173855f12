namespace Tapdisk.Filters.Mirror;

/// <summary>How a VBD uses its secondary image (blktap's secondary modes: disabled 0, mirror 1, standby 2).</summary>
public enum SecondaryMode
{
    /// <summary>Every change goes to the primary and the secondary (tap-ctl -2).</summary>
    Mirror = 1,

    /// <summary>Changes go to the secondary only once the primary has run out of space (tap-ctl -2 with -s).</summary>
    Standby = 2,
}
