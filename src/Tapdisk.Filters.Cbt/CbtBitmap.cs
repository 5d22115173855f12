namespace Tapdisk.Filters.Cbt;

/// <summary>The CBT bitmap's arithmetic: one bit per 64 KiB unit, bit n in byte n/8 under mask 1 &lt;&lt; (n % 8).</summary>
public static class CbtBitmap
{
    public const int UnitBytes = 65536;

    private const int UnitShift = 16;

    /// <summary>ceil(ceil(size / 64 KiB) / 8), in unsigned 64-bit arithmetic as blktap computes it (sizes within 64 KiB of 2^64 wrap to 0).</summary>
    public static ulong BitmapBytes(ulong diskSizeBytes)
    {
        ulong units = unchecked(diskSizeBytes + UnitBytes - 1) >> UnitShift;
        return (units + 7) >> 3;
    }

    /// <summary>The units a request of <paramref name="lengthBytes"/> (> 0) at <paramref name="offsetBytes"/> touches, first and last inclusive.</summary>
    public static (long First, long Last) Units(long offsetBytes, long lengthBytes) =>
        (offsetBytes >> UnitShift, (offsetBytes + lengthBytes - 1) >> UnitShift);

    public static bool IsSet(ReadOnlySpan<byte> bitmap, long unit) => (bitmap[(int)(unit >> 3)] & (1 << (int)(unit & 7))) != 0;
}
