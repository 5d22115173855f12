namespace Tapdisk.Storage;

[Flags]
public enum ZeroFlags
{
    None = 0,

    /// <summary>Keep the range allocated (NBD_CMD_FLAG_NO_HOLE).</summary>
    NoHole = 1,

    /// <summary>Fail with EOPNOTSUPP rather than write zeros slowly (NBD_CMD_FLAG_FAST_ZERO).</summary>
    FastOnly = 2,

    Fua = 4,
}
