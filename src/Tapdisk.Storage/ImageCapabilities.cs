namespace Tapdisk.Storage;

/// <summary>What an image supports; servers advertise only these.</summary>
[Flags]
public enum ImageCapabilities
{
    None = 0,
    Write = 1 << 0,
    Flush = 1 << 1,
    Fua = 1 << 2,
    Trim = 1 << 3,
    Zero = 1 << 4,

    /// <summary>Zeroing a range is cheap (no data written): NBD FAST_ZERO may succeed.</summary>
    FastZero = 1 << 5,

    /// <summary>GetExtentsAsync reports real allocation (otherwise everything is data).</summary>
    Extents = 1 << 6,

    /// <summary>A flush on one connection makes every connection's completed writes durable (NBD MULTI_CONN).</summary>
    MultiConnSafe = 1 << 7,
}
