using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>blkif protocol constants (C: BLKIF_OP_*, BLKIF_RSP_*, BLKIF_MAX_*, VDISK_*; xen/io/blkif.h, control-xen.md Part II 3.4).</summary>
public static class BlkifConstants
{
    public const byte OpRead = 0;
    public const byte OpWrite = 1;
    public const byte OpWriteBarrier = 2;
    public const byte OpFlushDiskcache = 3;
    public const byte OpReserved1 = 4;
    public const byte OpDiscard = 5;
    public const byte OpIndirect = 6;
    public const short RspOkay = 0;
    public const short RspError = -1;
    public const short RspEopnotsupp = -2;
    public const int MaxSegmentsPerRequest = 11;
    public const int MaxIndirectPagesPerRequest = 8;
    public const byte DiscardSecure = 1;
    public const int VdiskReadonly = 4;
}

/// <summary>The shared ring's header (<c>struct blkif_sring</c> up to <c>ring[]</c>): 64 bytes, then the slots.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifSringHeader
{
    [FieldOffset(0)]
    public uint ReqProd;

    [FieldOffset(4)]
    public uint ReqEvent;

    [FieldOffset(8)]
    public uint RspProd;

    [FieldOffset(12)]
    public uint RspEvent;
}

/// <summary><c>struct blkif_request_segment</c>: 8 bytes, the same for every ABI.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct BlkifSegment
{
    [FieldOffset(0)]
    public uint Gref;

    [FieldOffset(4)]
    public byte FirstSect;

    [FieldOffset(5)]
    public byte LastSect;
}

/// <summary><c>struct blkif_request</c>, x86_64 (native) layout; seg[11] starts at <see cref="Seg"/>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
public struct BlkifRequest
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte NrSegments;

    [FieldOffset(2)]
    public ushort Handle;

    [FieldOffset(8)]
    public ulong Id;

    [FieldOffset(16)]
    public ulong SectorNumber;

    [FieldOffset(24)]
    public BlkifSegment Seg;
}

/// <summary><c>struct blkif_request</c>, x86_32 layout (4-byte packing, as i386 aligns u64).</summary>
[StructLayout(LayoutKind.Explicit, Size = 108)]
public struct BlkifRequest32
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte NrSegments;

    [FieldOffset(2)]
    public ushort Handle;

    [FieldOffset(4)]
    public ulong Id;

    [FieldOffset(12)]
    public ulong SectorNumber;

    [FieldOffset(20)]
    public BlkifSegment Seg;
}

/// <summary><c>struct blkif_request_discard</c>, x86_64 layout.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct BlkifDiscardRequest
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte Flag;

    [FieldOffset(8)]
    public ulong Id;

    [FieldOffset(16)]
    public ulong SectorNumber;

    [FieldOffset(24)]
    public ulong NrSectors;
}

/// <summary><c>struct blkif_request_discard</c>, x86_32 layout.</summary>
[StructLayout(LayoutKind.Explicit, Size = 28)]
public struct BlkifDiscardRequest32
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte Flag;

    [FieldOffset(4)]
    public ulong Id;

    [FieldOffset(12)]
    public ulong SectorNumber;

    [FieldOffset(20)]
    public ulong NrSectors;
}

/// <summary><c>struct blkif_request_indirect</c>, x86_64 layout; indirect_grefs[8] starts at <see cref="IndirectGrefs"/>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifIndirectRequest
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte IndirectOp;

    [FieldOffset(2)]
    public ushort NrSegments;

    [FieldOffset(8)]
    public ulong Id;

    [FieldOffset(16)]
    public ulong SectorNumber;

    [FieldOffset(24)]
    public ushort Handle;

    [FieldOffset(28)]
    public uint IndirectGrefs;
}

/// <summary><c>struct blkif_request_indirect</c>, x86_32 layout (64 bytes: i386 adds 8 bytes of padding at the end).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifIndirectRequest32
{
    [FieldOffset(0)]
    public byte Operation;

    [FieldOffset(1)]
    public byte IndirectOp;

    [FieldOffset(2)]
    public ushort NrSegments;

    [FieldOffset(4)]
    public ulong Id;

    [FieldOffset(12)]
    public ulong SectorNumber;

    [FieldOffset(20)]
    public ushort Handle;

    [FieldOffset(24)]
    public uint IndirectGrefs;
}

/// <summary><c>struct blkif_response</c>, x86_64 layout (16 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct BlkifResponse
{
    [FieldOffset(0)]
    public ulong Id;

    [FieldOffset(8)]
    public byte Operation;

    [FieldOffset(10)]
    public short Status;
}

/// <summary><c>struct blkif_response</c>, x86_32 layout (12 bytes; same field offsets).</summary>
[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct BlkifResponse32
{
    [FieldOffset(0)]
    public ulong Id;

    [FieldOffset(8)]
    public byte Operation;

    [FieldOffset(10)]
    public short Status;
}
