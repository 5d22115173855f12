using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary>Slot size, slot count and byte offsets of one ring ABI and order (control-xen.md Part II 3.1-3.3).</summary>
public readonly struct BlkifRingGeometry
{
    public const int PageSize = 4096;
    public const int HeaderSize = 64;

    /// <summary>Up to 8 pages, as blktap (its connect message has 8 grefs) and as tapback advertises.</summary>
    public const int MaxRingPageOrder = 3;

    private BlkifRingGeometry(bool is32, int order)
    {
        Is32 = is32;
        Order = order;
        SlotSize = is32 ? 108 : 112;
        int fit = ((PageSize << order) - HeaderSize) / SlotSize;
        SlotCount = 1 << (31 - int.LeadingZeroCount(fit)); // __RD32: round down to a power of two
    }

    public bool Is32 { get; }

    public int Order { get; }

    public int Pages => 1 << Order;

    public int RingBytes => PageSize << Order;

    /// <summary>sizeof(union blkif_sring_entry): 112 (x86_64) or 108 (x86_32).</summary>
    public int SlotSize { get; }

    /// <summary>nr_ents: 32 per page for both ABIs (32, 64, 128, 256 for orders 0..3).</summary>
    public int SlotCount { get; }

    /// <summary>Offset of seg[0] inside a read/write request.</summary>
    public int SegmentsOffset => Is32 ? 20 : 24;

    public static bool TryCreate(BlkifProtocol protocol, int order, out BlkifRingGeometry geometry)
    {
        geometry = default;
        if (order is < 0 or > MaxRingPageOrder || protocol is not (BlkifProtocol.Native or BlkifProtocol.X86 or BlkifProtocol.X64))
        {
            return false;
        }

        geometry = new BlkifRingGeometry(protocol == BlkifProtocol.X86, order);
        return true;
    }

    public int SlotOffset(uint index) => HeaderSize + ((int)(index & (uint)(SlotCount - 1)) * SlotSize);

    internal static int SegmentsPerIndirectPage => PageSize / 8;

    internal static int MaxDirectSegments => BlkifConstants.MaxSegmentsPerRequest;
}
