using System.Buffers.Binary;
using System.Text;

namespace Tapdisk.Drivers.Vhd;

/// <summary>The 1024-byte dynamic disk header ("cxsparse"), big-endian (data-plane.md 1.5).</summary>
public sealed class VhdDynamicHeader
{
    public const int Size = 1024;
    public const uint HeaderVersion = 0x00010000;
    public const uint DefaultBlockSize = 2 * 1024 * 1024;
    public const int LocatorCount = 8;

    internal const int DataOffsetOffset = 8;
    internal const int TableOffsetOffset = 16;
    internal const int HeaderVersionOffset = 24;
    internal const int MaxTableEntriesOffset = 28;
    internal const int BlockSizeOffset = 32;
    internal const int ChecksumOffset = 36;
    internal const int ParentUuidOffset = 40;
    internal const int ParentTimestampOffset = 56;
    internal const int Reserved1Offset = 60;
    internal const int ParentNameOffset = 64;
    internal const int ParentNameLength = 512;
    internal const int LocatorsOffset = 576;
    internal const int Reserved2Offset = 768;

    public static ReadOnlySpan<byte> Cookie => "cxsparse"u8;

    public byte[] CookieBytes { get; set; } = Cookie.ToArray();

    public ulong DataOffset { get; set; } = ulong.MaxValue;

    public ulong TableOffset { get; set; }

    public uint Version { get; set; } = HeaderVersion;

    public uint MaxTableEntries { get; set; }

    public uint BlockSize { get; set; } = DefaultBlockSize;

    public uint Checksum { get; set; }

    public byte[] ParentUuid { get; set; } = new byte[16];

    public uint ParentTimestamp { get; set; }

    public uint Reserved1 { get; set; }

    /// <summary>The raw UTF-16BE parent name field (512 bytes).</summary>
    public byte[] ParentNameBytes { get; set; } = new byte[ParentNameLength];

    public VhdParentLocator[] Locators { get; set; } = new VhdParentLocator[LocatorCount];

    public byte[] Reserved2 { get; set; } = new byte[Size - Reserved2Offset];

    public bool HasValidCookie => CookieBytes.AsSpan().SequenceEqual(Cookie);

    /// <summary>The parent's base name, decoded from UTF-16BE up to the first NUL.</summary>
    public string ParentName
    {
        get
        {
            string s = Encoding.BigEndianUnicode.GetString(ParentNameBytes);
            int nul = s.IndexOf('\0', StringComparison.Ordinal);
            return nul >= 0 ? s[..nul] : s;
        }

        set
        {
            Array.Clear(ParentNameBytes);
            byte[] encoded = Encoding.BigEndianUnicode.GetBytes(value);
            if (encoded.Length > ParentNameLength)
            {
                throw new ArgumentException("parent name longer than 256 UTF-16 code units", nameof(value));
            }

            encoded.CopyTo(ParentNameBytes, 0);
        }
    }

    public static VhdDynamicHeader Read(ReadOnlySpan<byte> s)
    {
        var locators = new VhdParentLocator[LocatorCount];
        for (int i = 0; i < LocatorCount; i++)
        {
            locators[i] = VhdParentLocator.Read(s.Slice(LocatorsOffset + (i * VhdParentLocator.Size), VhdParentLocator.Size));
        }

        return new VhdDynamicHeader
        {
            CookieBytes = s[..8].ToArray(),
            DataOffset = BinaryPrimitives.ReadUInt64BigEndian(s[DataOffsetOffset..]),
            TableOffset = BinaryPrimitives.ReadUInt64BigEndian(s[TableOffsetOffset..]),
            Version = BinaryPrimitives.ReadUInt32BigEndian(s[HeaderVersionOffset..]),
            MaxTableEntries = BinaryPrimitives.ReadUInt32BigEndian(s[MaxTableEntriesOffset..]),
            BlockSize = BinaryPrimitives.ReadUInt32BigEndian(s[BlockSizeOffset..]),
            Checksum = BinaryPrimitives.ReadUInt32BigEndian(s[ChecksumOffset..]),
            ParentUuid = s.Slice(ParentUuidOffset, 16).ToArray(),
            ParentTimestamp = BinaryPrimitives.ReadUInt32BigEndian(s[ParentTimestampOffset..]),
            Reserved1 = BinaryPrimitives.ReadUInt32BigEndian(s[Reserved1Offset..]),
            ParentNameBytes = s.Slice(ParentNameOffset, ParentNameLength).ToArray(),
            Locators = locators,
            Reserved2 = s[Reserved2Offset..Size].ToArray(),
        };
    }

    public void Write(Span<byte> destination)
    {
        Span<byte> d = destination[..Size];
        d.Clear();
        CookieBytes.AsSpan(0, 8).CopyTo(d);
        BinaryPrimitives.WriteUInt64BigEndian(d[DataOffsetOffset..], DataOffset);
        BinaryPrimitives.WriteUInt64BigEndian(d[TableOffsetOffset..], TableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(d[HeaderVersionOffset..], Version);
        BinaryPrimitives.WriteUInt32BigEndian(d[MaxTableEntriesOffset..], MaxTableEntries);
        BinaryPrimitives.WriteUInt32BigEndian(d[BlockSizeOffset..], BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(d[ChecksumOffset..], Checksum);
        ParentUuid.AsSpan(0, 16).CopyTo(d[ParentUuidOffset..]);
        BinaryPrimitives.WriteUInt32BigEndian(d[ParentTimestampOffset..], ParentTimestamp);
        BinaryPrimitives.WriteUInt32BigEndian(d[Reserved1Offset..], Reserved1);
        ParentNameBytes.AsSpan(0, ParentNameLength).CopyTo(d[ParentNameOffset..]);
        for (int i = 0; i < LocatorCount; i++)
        {
            Locators[i].Write(d.Slice(LocatorsOffset + (i * VhdParentLocator.Size), VhdParentLocator.Size));
        }

        Reserved2.AsSpan(0, Size - Reserved2Offset).CopyTo(d[Reserved2Offset..]);
    }

    public uint ComputeChecksum()
    {
        byte[] buffer = new byte[Size];
        Write(buffer);
        return VhdChecksum.Compute(buffer, ChecksumOffset);
    }

    public void UpdateChecksum() => Checksum = ComputeChecksum();
}
