namespace Tapdisk.Drivers.Vhd;

/// <summary>Footer disk type (offset 60).</summary>
public enum VhdDiskType
{
    Fixed = 2,
    Dynamic = 3,
    Differencing = 4,
}
