using System.Buffers.Binary;

namespace Tapdisk.Drivers.Vhd;

/// <summary>blktap's one-sector "tdbatmap" header, big-endian (data-plane.md 1.9), with the keyhash and marker.</summary>
public sealed class VhdBatmapHeader
{
    public const int Size = 512;
    public const uint CurrentVersion = 0x00010002;

    internal const int BatmapOffsetOffset = 8;
    internal const int BatmapSizeOffset = 16;
    internal const int VersionOffset = 20;
    internal const int ChecksumOffset = 24;
    internal const int MarkerOffset = 28;
    internal const int KeyhashCookieOffset = 29;
    internal const int KeyhashNonceOffset = 30;
    internal const int KeyhashHashOffset = 62;
    internal const int ReservedOffset = 94;

    public static ReadOnlySpan<byte> Cookie => "tdbatmap"u8;

    public byte[] CookieBytes { get; set; } = Cookie.ToArray();

    public ulong BatmapOffset { get; set; }

    /// <summary>Map length in sectors.</summary>
    public uint BatmapSize { get; set; }

    public uint Version { get; set; } = CurrentVersion;

    public uint Checksum { get; set; }

    public byte Marker { get; set; }

    public byte KeyhashCookie { get; set; }

    public byte[] KeyhashNonce { get; set; } = new byte[32];

    public byte[] KeyhashHash { get; set; } = new byte[32];

    public bool HasValidCookie => CookieBytes.AsSpan().SequenceEqual(Cookie);

    public static VhdBatmapHeader Read(ReadOnlySpan<byte> s) => new()
    {
        CookieBytes = s[..8].ToArray(),
        BatmapOffset = BinaryPrimitives.ReadUInt64BigEndian(s[BatmapOffsetOffset..]),
        BatmapSize = BinaryPrimitives.ReadUInt32BigEndian(s[BatmapSizeOffset..]),
        Version = BinaryPrimitives.ReadUInt32BigEndian(s[VersionOffset..]),
        Checksum = BinaryPrimitives.ReadUInt32BigEndian(s[ChecksumOffset..]),
        Marker = s[MarkerOffset],
        KeyhashCookie = s[KeyhashCookieOffset],
        KeyhashNonce = s.Slice(KeyhashNonceOffset, 32).ToArray(),
        KeyhashHash = s.Slice(KeyhashHashOffset, 32).ToArray(),
    };

    /// <summary>Writes exactly 512 bytes (the reference's 1024-byte write that zeroes the map is not copied).</summary>
    public void Write(Span<byte> destination)
    {
        Span<byte> d = destination[..Size];
        d.Clear();
        CookieBytes.AsSpan(0, 8).CopyTo(d);
        BinaryPrimitives.WriteUInt64BigEndian(d[BatmapOffsetOffset..], BatmapOffset);
        BinaryPrimitives.WriteUInt32BigEndian(d[BatmapSizeOffset..], BatmapSize);
        BinaryPrimitives.WriteUInt32BigEndian(d[VersionOffset..], Version);
        BinaryPrimitives.WriteUInt32BigEndian(d[ChecksumOffset..], Checksum);
        d[MarkerOffset] = Marker;
        d[KeyhashCookieOffset] = KeyhashCookie;
        KeyhashNonce.AsSpan(0, 32).CopyTo(d[KeyhashNonceOffset..]);
        KeyhashHash.AsSpan(0, 32).CopyTo(d[KeyhashHashOffset..]);
    }

    /// <summary>Copies the keyhash out as the raw 65-byte record (cookie, nonce, hash) the attribute form uses.</summary>
    public void GetKeyhashRecord(Span<byte> record)
    {
        record[0] = KeyhashCookie;
        KeyhashNonce.AsSpan(0, 32).CopyTo(record[1..]);
        KeyhashHash.AsSpan(0, 32).CopyTo(record[33..]);
    }

    public void SetKeyhashRecord(ReadOnlySpan<byte> record)
    {
        KeyhashCookie = record[0];
        KeyhashNonce = record.Slice(1, 32).ToArray();
        KeyhashHash = record.Slice(33, 32).ToArray();
    }

    /// <summary>Bytes of the map that the checksum covers: 512·max(1, ceil((curr_size >> 24) / 512)) (reference quirk).</summary>
    public static int ChecksummedMapBytes(ulong currentSize)
    {
        ulong mapBytes = currentSize >> 24;
        return (int)(512 * Math.Max(1UL, (mapBytes + 511) / 512));
    }

    /// <summary>Sectors the header declares for a BAT of <paramref name="maxBatEntries"/>: max(1, ceil(ceil(n/8)/512)).</summary>
    public static uint SectorsFor(uint maxBatEntries) => (uint)Math.Max(1, (((maxBatEntries + 7L) / 8) + 511) / 512);
}
