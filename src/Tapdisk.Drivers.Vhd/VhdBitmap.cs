namespace Tapdisk.Drivers.Vhd;

/// <summary>Sector bitmap helpers: MSB-first, bit i in byte i/8 with mask 0x80 >> (i % 8) (data-plane.md 1.7).</summary>
public static class VhdBitmap
{
    public static bool Test(ReadOnlySpan<byte> bitmap, int sector) => (bitmap[sector >> 3] & (0x80 >> (sector & 7))) != 0;

    public static void Set(Span<byte> bitmap, int sector) => bitmap[sector >> 3] |= (byte)(0x80 >> (sector & 7));

    public static void Clear(Span<byte> bitmap, int sector) => bitmap[sector >> 3] &= (byte)~(0x80 >> (sector & 7));

    /// <summary>Sets bits [first, first + count).</summary>
    public static void SetRange(Span<byte> bitmap, int first, int count)
    {
        int i = first;
        int end = first + count;
        while (i < end && (i & 7) != 0)
        {
            Set(bitmap, i++);
        }

        while (i + 8 <= end)
        {
            bitmap[i >> 3] = 0xFF;
            i += 8;
        }

        while (i < end)
        {
            Set(bitmap, i++);
        }
    }

    public static void ClearRange(Span<byte> bitmap, int first, int count)
    {
        for (int i = first; i < first + count; i++)
        {
            Clear(bitmap, i);
        }
    }

    /// <summary>True if bits [first, first + count) are all set.</summary>
    public static bool AllSet(ReadOnlySpan<byte> bitmap, int first, int count) => RunLength(bitmap, first, count, out bool present) == count && present;

    /// <summary>True if the first <paramref name="sectors"/> bits are all set.</summary>
    public static bool IsFull(ReadOnlySpan<byte> bitmap, int sectors) => AllSet(bitmap, 0, sectors);

    /// <summary>Length of the run of equal bits starting at <paramref name="first"/>, at most <paramref name="max"/>.</summary>
    public static int RunLength(ReadOnlySpan<byte> bitmap, int first, int max, out bool value)
    {
        value = Test(bitmap, first);
        byte whole = value ? (byte)0xFF : (byte)0x00;
        int i = first;
        int end = first + max;
        while (i < end)
        {
            if ((i & 7) == 0 && i + 8 <= end && bitmap[i >> 3] == whole)
            {
                i += 8;
                continue;
            }

            if (Test(bitmap, i) != value)
            {
                break;
            }

            i++;
        }

        return i - first;
    }
}
