using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// <c>struct gntdev_grant_copy_segment</c> (24 bytes): each side is either a local address (<c>virt</c>) or a foreign
/// {ref, offset, domid}, chosen by <see cref="Flags"/>. Public so the ring can fill the array the ioctl reads in place.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
public struct GrantCopySegment
{
    /// <summary>GNTCOPY_source_gref: the source is a foreign grant.</summary>
    public const ushort SourceGref = 1;

    /// <summary>GNTCOPY_dest_gref: the destination is a foreign grant.</summary>
    public const ushort DestGref = 2;

    [FieldOffset(0)]
    public ulong SourceVirt;

    [FieldOffset(0)]
    public uint SourceRef;

    [FieldOffset(4)]
    public ushort SourceOffset;

    [FieldOffset(6)]
    public ushort SourceDomid;

    [FieldOffset(8)]
    public ulong DestVirt;

    [FieldOffset(8)]
    public uint DestRef;

    [FieldOffset(12)]
    public ushort DestOffset;

    [FieldOffset(14)]
    public ushort DestDomid;

    [FieldOffset(16)]
    public ushort Len;

    [FieldOffset(18)]
    public ushort Flags;

    /// <summary>Out: a GNTST_* code; the ioctl returns 0 even when some segments failed, so every status must be read.</summary>
    [FieldOffset(20)]
    public short Status;
}
