namespace Tapdisk.Drivers.Vhd;

/// <summary>VHD checksums: the ones' complement of the unsigned byte sum (data-plane.md 1.3).</summary>
public static class VhdChecksum
{
    /// <summary>Checksum of a structure, skipping the 4-byte checksum field at <paramref name="checksumOffset"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data, int checksumOffset)
    {
        uint sum = 0;
        for (int i = 0; i < data.Length; i++)
        {
            if (i >= checksumOffset && i < checksumOffset + 4)
            {
                continue;
            }

            sum += data[i];
        }

        return ~sum;
    }

    /// <summary>Batmap map checksum; version 1.1 summed signed chars (a historic bug kept for reading).</summary>
    public static uint ComputeBatmap(ReadOnlySpan<byte> map, bool signedBytes)
    {
        uint sum = 0;
        foreach (byte b in map)
        {
            sum += signedBytes ? (uint)(sbyte)b : b;
        }

        return ~sum;
    }
}
