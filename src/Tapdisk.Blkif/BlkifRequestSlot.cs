using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary>
/// One in-flight request: its private copy of the ring slot, its validated segments, its bounce buffer and the grant-copy
/// descriptors. A ring has exactly nr_ents of these, allocated up front (buffers on first use), so steady state allocates nothing.
/// </summary>
internal sealed class BlkifRequestSlot : IThreadPoolWorkItem
{
    private readonly BlkifRing _ring;

    /// <summary>The largest request a slot copies from the ring (the x86_64 request; the x86_32 one is 108).</summary>
    public const int RawSize = 112;

    public BlkifRequestSlot(BlkifRing ring, int index, int maxSegments)
    {
        _ring = ring;
        Index = index;
        Raw = new byte[RawSize];
        Segments = new BlkifSegment[maxSegments];
        Copies = GC.AllocateArray<GrantCopySegment>(maxSegments, pinned: true);
        Continuation = () => ring.OnStepCompleted(this);
    }

    public int Index { get; }

    /// <summary>Link in the ring's completion stack (written by the completing thread before it publishes the slot).</summary>
    public BlkifRequestSlot? Next;

    /// <summary>The slot bytes, copied once from shared memory; nothing is read from the shared slot again.</summary>
    public byte[] Raw { get; }

    public BlkifSegment[] Segments { get; }

    public GrantCopySegment[] Copies { get; }

    /// <summary>Preallocated continuation for the image's ValueTask (no closure per request).</summary>
    public Action Continuation { get; }

    /// <summary>Page-aligned bounce buffer for direct requests (11 pages), packed segment after segment; allocated on first use and kept.</summary>
    public AlignedMemory? Buffer;

    /// <summary>A bigger buffer for one large indirect request, rented from the shared pool and returned when it is answered.</summary>
    public AlignedMemory? LargeBuffer;

    /// <summary>The buffer the current request uses.</summary>
    public AlignedMemory ActiveBuffer => LargeBuffer ?? Buffer!;

    /// <summary>Private copy of an indirect request's descriptor pages; allocated on first indirect use.</summary>
    public AlignedMemory? IndirectPages;

    public ulong Id;
    public byte Operation;
    public ulong SectorNumber;
    public int SegmentCount;
    public int LengthBytes;
    public long DiscardSectors;
    public SlotSteps Steps;
    public SlotIo Io;
    public int IoErrno;
    public ValueTask Pending;
    public bool DrainStarted;

    /// <summary>Stopwatch timestamp when the request was taken in, for the statistics pages; 0 when none is published.</summary>
    public long StartTimestamp;

    /// <summary>Taken from the ring and not yet given back (ring thread only): guards against releasing a slot twice.</summary>
    public bool InUse;

    /// <summary>Runs on an I/O worker (dispatched by the ring through the VBD's backend).</summary>
    void IThreadPoolWorkItem.Execute() => _ring.RunImageSteps(this);

    public void Reset()
    {
        Id = 0;
        Operation = 0;
        SectorNumber = 0;
        SegmentCount = 0;
        LengthBytes = 0;
        DiscardSectors = 0;
        Steps = SlotSteps.None;
        Io = SlotIo.None;
        IoErrno = 0;
        Pending = default;
        DrainStarted = false;
        StartTimestamp = 0;
        Next = null;
    }
}

/// <summary>What is left to do for a slot, in this order.</summary>
[Flags]
internal enum SlotSteps
{
    None = 0,

    /// <summary>Barrier: make every earlier completed write durable before this one's data.</summary>
    PreFlush = 1,
    Io = 2,
    PostFlush = 4,

    /// <summary>Read: grant-copy the bounce buffer to the guest.</summary>
    CopyOut = 8,
}

internal enum SlotIo
{
    None,
    Read,
    Write,
    Discard,
}
