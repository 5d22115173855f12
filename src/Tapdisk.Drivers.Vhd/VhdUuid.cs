using System.Security.Cryptography;

namespace Tapdisk.Drivers.Vhd;

/// <summary>Helpers for the raw 16-byte UUIDs VHD stores (libuuid byte order).</summary>
public static class VhdUuid
{
    public static byte[] NewRandom()
    {
        byte[] b = RandomNumberGenerator.GetBytes(16);
        b[6] = (byte)((b[6] & 0x0F) | 0x40); // version 4, as uuid_generate
        b[8] = (byte)((b[8] & 0x3F) | 0x80); // RFC 4122 variant
        return b;
    }

    public static bool IsNull(ReadOnlySpan<byte> uuid) => !uuid.ContainsAnyExcept((byte)0);

    /// <summary>Formats as uuid_unparse does: bytes in stored order, lower-case hex.</summary>
    public static string Format(ReadOnlySpan<byte> uuid)
    {
        string hex = Convert.ToHexStringLower(uuid);
        return $"{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..32]}";
    }
}
