using System.Buffers.Binary;

namespace Tapdisk.Filters.Cbt;

/// <summary>
/// The 48-byte header of blktap's CBT log (data-plane.md 7.1), in host order (little-endian): parent UUID, child UUID
/// (16 raw bytes each, in the string's digit order), int32 consistent flag, 4 bytes of padding kept as found, u64 disk
/// size in bytes. The LSB-first bitmap follows at <see cref="Size"/>.
/// </summary>
public sealed record CbtLogHeader
{
    public const int Size = 48;

    private const int ParentOffset = 0;
    private const int ChildOffset = 16;
    private const int ConsistentOffset = 32;
    private const int PadOffset = 36;
    private const int SizeBytesOffset = 40;
    private const int UuidLength = 16;

    public Guid Parent { get; init; }

    public Guid Child { get; init; }

    /// <summary>1 when the toolstack knows the log is complete; tapdisk never touches it.</summary>
    public int Consistent { get; init; }

    /// <summary>Bytes 36..39: no meaning, preserved by every rewrite (cbt-util's set keeps them).</summary>
    public uint Pad { get; init; }

    public ulong DiskSizeBytes { get; init; }

    public static CbtLogHeader Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
        {
            throw new ArgumentException($"a CBT log header is {Size} bytes, got {source.Length}", nameof(source));
        }

        return new CbtLogHeader
        {
            Parent = new Guid(source.Slice(ParentOffset, UuidLength), bigEndian: true),
            Child = new Guid(source.Slice(ChildOffset, UuidLength), bigEndian: true),
            Consistent = BinaryPrimitives.ReadInt32LittleEndian(source[ConsistentOffset..]),
            Pad = BinaryPrimitives.ReadUInt32LittleEndian(source[PadOffset..]),
            DiskSizeBytes = BinaryPrimitives.ReadUInt64LittleEndian(source[SizeBytesOffset..]),
        };
    }

    public void Write(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"a CBT log header is {Size} bytes, got {destination.Length}", nameof(destination));
        }

        // Guid's big-endian byte form is the UUID's bytes in string order, as libuuid stores them.
        _ = Parent.TryWriteBytes(destination.Slice(ParentOffset, UuidLength), bigEndian: true, out _);
        _ = Child.TryWriteBytes(destination.Slice(ChildOffset, UuidLength), bigEndian: true, out _);
        BinaryPrimitives.WriteInt32LittleEndian(destination[ConsistentOffset..], Consistent);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[PadOffset..], Pad);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[SizeBytesOffset..], DiskSizeBytes);
    }
}
