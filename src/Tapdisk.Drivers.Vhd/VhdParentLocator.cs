using System.Buffers.Binary;

namespace Tapdisk.Drivers.Vhd;

/// <summary>A 24-byte parent locator entry of the dynamic header (data-plane.md 1.5, 1.8).</summary>
public readonly record struct VhdParentLocator(uint PlatformCode, uint DataSpace, uint DataLength, uint Reserved, ulong DataOffset)
{
    public const int Size = 24;
    public const uint None = 0;
    public const uint Wi2r = 0x57693272;
    public const uint Wi2k = 0x5769326B;
    public const uint W2ru = 0x57327275;
    public const uint W2ku = 0x57326B75;
    public const uint Mac = 0x4D616320;
    public const uint MacX = 0x4D616358;

    public static bool IsKnownCode(uint code) => code is None or Wi2r or Wi2k or W2ru or W2ku or Mac or MacX;

    /// <summary>data_space in bytes: values below 512 count sectors (the spec), multiples of 512 count bytes (MS tools, blktap); else 0.</summary>
    public long DataSpaceBytes => DataSpace < 512 ? DataSpace * 512L : DataSpace % 512 == 0 ? DataSpace : 0;

    public static string CodeName(uint code) => code switch
    {
        None => "NONE",
        Wi2r => "Wi2r",
        Wi2k => "Wi2k",
        W2ru => "W2ru",
        W2ku => "W2ku",
        Mac => "Mac ",
        MacX => "MacX",
        _ => $"0x{code:x8}",
    };

    public static VhdParentLocator Read(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt32BigEndian(s),
        BinaryPrimitives.ReadUInt32BigEndian(s[4..]),
        BinaryPrimitives.ReadUInt32BigEndian(s[8..]),
        BinaryPrimitives.ReadUInt32BigEndian(s[12..]),
        BinaryPrimitives.ReadUInt64BigEndian(s[16..]));

    public void Write(Span<byte> d)
    {
        BinaryPrimitives.WriteUInt32BigEndian(d, PlatformCode);
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], DataSpace);
        BinaryPrimitives.WriteUInt32BigEndian(d[8..], DataLength);
        BinaryPrimitives.WriteUInt32BigEndian(d[12..], Reserved);
        BinaryPrimitives.WriteUInt64BigEndian(d[16..], DataOffset);
    }
}
