namespace Tapdisk.Drivers.Vhd;

/// <summary>Sizes and offsets derived from the header (data-plane.md 1.1, 1.7, 1.9).</summary>
public static class VhdLayout
{
    public const int SectorSize = 512;
    public const int BlockSize = 2 * 1024 * 1024;
    public const uint Unallocated = uint.MaxValue;

    /// <summary>XAPI and qemu cap VHDs at 2040 GiB; we create nothing larger.</summary>
    public const long MaxSizeBytes = 2040L * 1024 * 1024 * 1024;

    /// <summary>Sectors of BAT area for <paramref name="maxBatEntries"/> entries (at least one).</summary>
    public static long BatSectors(uint maxBatEntries) => Math.Max(1, ((maxBatEntries * 4L) + 511) / 512);

    /// <summary>Sectors of sector bitmap per block: max(1, ceil(spb / 8 / 512)).</summary>
    public static int BitmapSectors(uint blockSizeBytes) => (int)Math.Max(1, ((blockSizeBytes / SectorSize / 8) + 511) / 512);

    /// <summary>Where blktap puts the batmap header: right after the padded BAT.</summary>
    public static ulong BatmapHeaderOffset(ulong tableOffset, uint maxBatEntries) => tableOffset + ((ulong)BatSectors(maxBatEntries) * SectorSize);

    /// <summary>BAT entries in use: ceil(current size / block size).</summary>
    public static long EntriesFor(ulong currentSize, uint blockSizeBytes) => (long)((currentSize + blockSizeBytes - 1) / blockSizeBytes);

    /// <summary>Gap sectors that put a new block's data area on a 4 KiB boundary.</summary>
    public static long AlignmentGap(long nextSector, int bitmapSectors)
    {
        long gap = (8 - ((nextSector + bitmapSectors) % 8)) % 8;
        return gap;
    }
}
