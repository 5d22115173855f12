using System.Buffers.Binary;
using System.Text;

namespace Tapdisk.Drivers.Vhd;

/// <summary>The 512-byte hard disk footer, big-endian (data-plane.md 1.2).</summary>
public sealed class VhdFooter
{
    public const int Size = 512;
    public const ulong FixedDataOffset = ulong.MaxValue;
    public const uint TapCreator = 0x74617000; // "tap\0"
    public const uint TapVersion = 0x00010003;
    public const uint DefaultFeatures = 2;
    public const uint FormatVersion = 0x00010000;
    public static readonly DateTime Epoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    internal const int CookieOffset = 0;
    internal const int FeaturesOffset = 8;
    internal const int FileFormatVersionOffset = 12;
    internal const int DataOffsetOffset = 16;
    internal const int TimestampOffset = 24;
    internal const int CreatorApplicationOffset = 28;
    internal const int CreatorVersionOffset = 32;
    internal const int CreatorHostOsOffset = 36;
    internal const int OriginalSizeOffset = 40;
    internal const int CurrentSizeOffset = 48;
    internal const int GeometryOffset = 56;
    internal const int DiskTypeOffset = 60;
    internal const int ChecksumOffset = 64;
    internal const int UniqueIdOffset = 68;
    internal const int SavedStateOffset = 84;
    internal const int HiddenOffset = 85;
    internal const int ReservedOffset = 86;

    public static ReadOnlySpan<byte> Cookie => "conectix"u8;

    /// <summary>The cookie blktap writes while a journal holds the VHD disabled.</summary>
    public static ReadOnlySpan<byte> PoisonCookie => "v_poison"u8;

    public byte[] CookieBytes { get; set; } = Cookie.ToArray();

    public uint Features { get; set; } = DefaultFeatures;

    public uint FileFormatVersion { get; set; } = FormatVersion;

    public ulong DataOffset { get; set; }

    public uint Timestamp { get; set; }

    public uint CreatorApplication { get; set; } = TapCreator;

    public uint CreatorVersion { get; set; } = TapVersion;

    public uint CreatorHostOs { get; set; }

    public ulong OriginalSize { get; set; }

    public ulong CurrentSize { get; set; }

    public uint Geometry { get; set; }

    public uint DiskTypeValue { get; set; }

    public uint Checksum { get; set; }

    public byte[] UniqueId { get; set; } = new byte[16];

    public byte SavedState { get; set; }

    public byte Hidden { get; set; }

    /// <summary>The 426 reserved bytes, kept verbatim so a rewrite changes nothing we did not mean to.</summary>
    public byte[] Reserved { get; set; } = new byte[Size - ReservedOffset];

    public VhdDiskType DiskType => (VhdDiskType)DiskTypeValue;

    public bool IsDynamic => DiskTypeValue is (uint)VhdDiskType.Dynamic or (uint)VhdDiskType.Differencing;

    public bool IsTapCreator => CreatorApplication == TapCreator;

    public string CreatorName => Encoding.ASCII.GetString(BitConverter.GetBytes(BinaryPrimitives.ReverseEndianness(CreatorApplication))).TrimEnd('\0');

    public static uint TimestampNow() => (uint)(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 946684800);

    public static VhdFooter Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size - 1)
        {
            throw new ArgumentException("footer needs 512 bytes", nameof(source));
        }

        Span<byte> buffer = stackalloc byte[Size];
        buffer.Clear();
        source[..Math.Min(Size, source.Length)].CopyTo(buffer);
        return new VhdFooter
        {
            CookieBytes = buffer[..8].ToArray(),
            Features = BinaryPrimitives.ReadUInt32BigEndian(buffer[FeaturesOffset..]),
            FileFormatVersion = BinaryPrimitives.ReadUInt32BigEndian(buffer[FileFormatVersionOffset..]),
            DataOffset = BinaryPrimitives.ReadUInt64BigEndian(buffer[DataOffsetOffset..]),
            Timestamp = BinaryPrimitives.ReadUInt32BigEndian(buffer[TimestampOffset..]),
            CreatorApplication = BinaryPrimitives.ReadUInt32BigEndian(buffer[CreatorApplicationOffset..]),
            CreatorVersion = BinaryPrimitives.ReadUInt32BigEndian(buffer[CreatorVersionOffset..]),
            CreatorHostOs = BinaryPrimitives.ReadUInt32BigEndian(buffer[CreatorHostOsOffset..]),
            OriginalSize = BinaryPrimitives.ReadUInt64BigEndian(buffer[OriginalSizeOffset..]),
            CurrentSize = BinaryPrimitives.ReadUInt64BigEndian(buffer[CurrentSizeOffset..]),
            Geometry = BinaryPrimitives.ReadUInt32BigEndian(buffer[GeometryOffset..]),
            DiskTypeValue = BinaryPrimitives.ReadUInt32BigEndian(buffer[DiskTypeOffset..]),
            Checksum = BinaryPrimitives.ReadUInt32BigEndian(buffer[ChecksumOffset..]),
            UniqueId = buffer.Slice(UniqueIdOffset, 16).ToArray(),
            SavedState = buffer[SavedStateOffset],
            Hidden = buffer[HiddenOffset],
            Reserved = buffer[ReservedOffset..].ToArray(),
        };
    }

    /// <summary>Serialises with the stored <see cref="Checksum"/> (call <see cref="UpdateChecksum"/> first to refresh it).</summary>
    public void Write(Span<byte> destination)
    {
        Span<byte> d = destination[..Size];
        d.Clear();
        CookieBytes.AsSpan(0, 8).CopyTo(d);
        BinaryPrimitives.WriteUInt32BigEndian(d[FeaturesOffset..], Features);
        BinaryPrimitives.WriteUInt32BigEndian(d[FileFormatVersionOffset..], FileFormatVersion);
        BinaryPrimitives.WriteUInt64BigEndian(d[DataOffsetOffset..], DataOffset);
        BinaryPrimitives.WriteUInt32BigEndian(d[TimestampOffset..], Timestamp);
        BinaryPrimitives.WriteUInt32BigEndian(d[CreatorApplicationOffset..], CreatorApplication);
        BinaryPrimitives.WriteUInt32BigEndian(d[CreatorVersionOffset..], CreatorVersion);
        BinaryPrimitives.WriteUInt32BigEndian(d[CreatorHostOsOffset..], CreatorHostOs);
        BinaryPrimitives.WriteUInt64BigEndian(d[OriginalSizeOffset..], OriginalSize);
        BinaryPrimitives.WriteUInt64BigEndian(d[CurrentSizeOffset..], CurrentSize);
        BinaryPrimitives.WriteUInt32BigEndian(d[GeometryOffset..], Geometry);
        BinaryPrimitives.WriteUInt32BigEndian(d[DiskTypeOffset..], DiskTypeValue);
        BinaryPrimitives.WriteUInt32BigEndian(d[ChecksumOffset..], Checksum);
        UniqueId.AsSpan(0, 16).CopyTo(d[UniqueIdOffset..]);
        d[SavedStateOffset] = SavedState;
        d[HiddenOffset] = Hidden;
        Reserved.AsSpan(0, Size - ReservedOffset).CopyTo(d[ReservedOffset..]);
    }

    public uint ComputeChecksum()
    {
        Span<byte> buffer = stackalloc byte[Size];
        Write(buffer);
        return VhdChecksum.Compute(buffer, ChecksumOffset);
    }

    public void UpdateChecksum() => Checksum = ComputeChecksum();

    public bool HasValidCookie => CookieBytes.AsSpan().SequenceEqual(Cookie);

    public bool IsPoisoned => CookieBytes.AsSpan().SequenceEqual(PoisonCookie);

    /// <summary>Checksum check including blktap's legacy rule: early td-util set "hidden" without re-summing.</summary>
    public bool HasValidChecksum
    {
        get
        {
            if (ComputeChecksum() == Checksum)
            {
                return true;
            }

            if (Hidden != 0 && IsTapCreator && CreatorVersion is 0x00000001 or 0x00010001)
            {
                byte hidden = Hidden;
                Hidden = 0;
                bool ok = ComputeChecksum() == Checksum;
                Hidden = hidden;
                return ok;
            }

            return false;
        }
    }

    public VhdFooter Clone()
    {
        var copy = (VhdFooter)MemberwiseClone();
        copy.CookieBytes = (byte[])CookieBytes.Clone();
        copy.UniqueId = (byte[])UniqueId.Clone();
        copy.Reserved = (byte[])Reserved.Clone();
        return copy;
    }
}
