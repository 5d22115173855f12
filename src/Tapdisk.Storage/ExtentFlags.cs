namespace Tapdisk.Storage;

/// <summary>Allocation state of a range; the values are NBD base:allocation's (HOLE = 1, ZERO = 2).</summary>
[Flags]
public enum ExtentFlags
{
    Data = 0,
    Hole = 1,
    Zero = 2,
}
