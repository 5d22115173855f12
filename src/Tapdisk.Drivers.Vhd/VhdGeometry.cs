namespace Tapdisk.Drivers.Vhd;

/// <summary>CHS geometry as the VHD specification computes it (data-plane.md 1.12).</summary>
public readonly record struct VhdGeometry(ushort Cylinders, byte Heads, byte SectorsPerTrack)
{
    public uint Encoded => ((uint)Cylinders << 16) | ((uint)Heads << 8) | SectorsPerTrack;

    public long SizeBytes => (long)Cylinders * Heads * SectorsPerTrack * 512;

    public static VhdGeometry FromEncoded(uint value) => new((ushort)(value >> 16), (byte)(value >> 8), (byte)value);

    public static VhdGeometry ForSize(long sizeBytes)
    {
        long secs = Math.Max(1, (sizeBytes + 511) / 512);
        secs = Math.Min(secs, 65535L * 16 * 255);
        long spt, heads, cth;
        if (secs >= 65535L * 16 * 63)
        {
            spt = 255;
            heads = 16;
            cth = secs / spt;
        }
        else
        {
            spt = 17;
            cth = secs / spt;
            heads = Math.Max(4, (cth + 1023) / 1024);
            if (cth >= heads * 1024 || heads > 16)
            {
                spt = 31;
                heads = 16;
                cth = secs / spt;
            }

            if (cth >= heads * 1024)
            {
                spt = 63;
                heads = 16;
                cth = secs / spt;
            }
        }

        return new VhdGeometry((ushort)(cth / heads), (byte)heads, (byte)spt);
    }
}
