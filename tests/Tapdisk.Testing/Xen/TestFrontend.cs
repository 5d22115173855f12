using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Blkif;

namespace Tapdisk.Testing.Xen;

/// <summary>A response as the frontend read it from the ring.</summary>
public readonly record struct BlkifTestResponse(ulong Id, byte Operation, short Status);

/// <summary>
/// A guest's block frontend driving the shared ring the way Linux xen-blkfront does: it initialises the header, writes
/// requests at req_prod_pvt, pushes with RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, and sleeps only on a notification after
/// RING_FINAL_CHECK_FOR_RESPONSES, so a backend that forgets to notify makes it time out.
/// </summary>
public sealed class TestFrontend : IDisposable
{
    public const ushort DefaultDomid = 7;

    private readonly FakeXen _xen;
    private readonly MappedRegion _ring;
    private readonly SemaphoreSlim _notified = new(0);
    private readonly bool _is32;
    private readonly int _slotSize;
    private uint _reqProdPvt;
    private uint _reqProdPublished;
    private uint _rspCons;
    private long _notifications;

    public TestFrontend(FakeXen xen, BlkifProtocol protocol = BlkifProtocol.X64, int order = 0, ushort domid = DefaultDomid, uint devid = 51712)
    {
        _xen = xen;
        Domid = domid;
        _is32 = protocol == BlkifProtocol.X86;
        _slotSize = _is32 ? 108 : 112;
        int pages = 1 << order;
        SlotCount = 1 << (31 - int.LeadingZeroCount(((4096 << order) - 64) / _slotSize));

        // Ring pages deliberately not contiguous and in reverse order: the backend must map them in ref order.
        int first = xen.AllocatePages(2 * pages);
        int[] ringPages = new int[pages];
        uint[] refs = new uint[pages];
        for (int i = 0; i < pages; i++)
        {
            ringPages[i] = first + (2 * (pages - 1 - i));
            refs[i] = xen.GrantAccess(domid, ringPages[i], readOnly: false);
        }

        _ring = xen.Memory.MapPages(ringPages, writable: true);
        _ring.Span.Clear();
        Index(ReqEventOffset) = 1;
        Index(RspEventOffset) = 1;
        uint port = xen.AllocateUnboundPort(domid, OnNotified);
        Parameters = new BlkifConnectParameters(domid, devid, refs, order, protocol, port);
    }

    private const int ReqProdOffset = 0;
    private const int ReqEventOffset = 4;
    private const int RspProdOffset = 8;
    private const int RspEventOffset = 12;

    public ushort Domid { get; }

    public BlkifConnectParameters Parameters { get; }

    public int SlotCount { get; }

    public long Notifications => Interlocked.Read(ref _notifications);

    /// <summary>Requests queued or pushed whose responses have not been read.</summary>
    public int Outstanding => (int)(_reqProdPvt - _rspCons);

    /// <summary>A fresh data page granted to the backend; returns its page number and grant ref.</summary>
    public (int Page, uint Gref) AllocateDataPage(bool readOnly = false)
    {
        int page = _xen.AllocatePages(1);
        return (page, _xen.GrantAccess(Domid, page, readOnly));
    }

    public Span<byte> PageSpan(int page) => _xen.Page(page);

    public void QueueRequest(byte operation, ulong id, ulong sector, ReadOnlySpan<BlkifSegment> segments, int? nrSegments = null)
    {
        Span<byte> slot = NextSlot();
        slot[0] = operation;
        slot[1] = (byte)(nrSegments ?? segments.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 4 : 8)..], id);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 12 : 16)..], sector);
        MemoryMarshal.AsBytes(segments).CopyTo(slot[(_is32 ? 20 : 24)..]);
    }

    public void QueueDiscard(ulong id, ulong sector, ulong sectors, byte flag = 0)
    {
        Span<byte> slot = NextSlot();
        slot[0] = BlkifConstants.OpDiscard;
        slot[1] = flag;
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 4 : 8)..], id);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 12 : 16)..], sector);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 20 : 24)..], sectors);
    }

    public void QueueIndirect(byte indirectOp, ulong id, ulong sector, ushort nrSegments, ReadOnlySpan<uint> indirectGrefs)
    {
        Span<byte> slot = NextSlot();
        slot[0] = BlkifConstants.OpIndirect;
        slot[1] = indirectOp;
        BinaryPrimitives.WriteUInt16LittleEndian(slot[2..], nrSegments);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 4 : 8)..], id);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[(_is32 ? 12 : 16)..], sector);
        MemoryMarshal.AsBytes(indirectGrefs).CopyTo(slot[(_is32 ? 24 : 28)..]);
    }

    /// <summary>Writes arbitrary bytes into the next slot (hostile frontends).</summary>
    public void QueueRaw(ReadOnlySpan<byte> bytes) => bytes.CopyTo(NextSlot());

    /// <summary>Rewrites a slot already pushed (a TOCTOU attempt).</summary>
    public Span<byte> SlotAt(uint index) => _ring.Slice(64 + ((int)(index & (uint)(SlotCount - 1)) * _slotSize), _slotSize);

    public uint RequestProducerPrivate => _reqProdPvt;

    /// <summary>RING_PUSH_REQUESTS_AND_CHECK_NOTIFY; returns whether it notified.</summary>
    public bool Push()
    {
        uint oldProd = _reqProdPublished;
        uint newProd = _reqProdPvt;
        Volatile.Write(ref Index(ReqProdOffset), newProd); // wmb, then the index
        _reqProdPublished = newProd;
        Interlocked.MemoryBarrier(); // mb: req_prod visible before req_event is read
        uint reqEvent = Volatile.Read(ref Index(ReqEventOffset));
        if (newProd - reqEvent < newProd - oldProd)
        {
            _xen.NotifyFromFrontend(Parameters.RemotePort);
            return true;
        }

        return false;
    }

    /// <summary>A lying producer index, published with a kick.</summary>
    public void PublishRawRequestProducer(uint value)
    {
        Volatile.Write(ref Index(ReqProdOffset), value);
        _xen.NotifyFromFrontend(Parameters.RemotePort);
    }

    /// <summary>Reads responses until <paramref name="count"/> arrived, sleeping only on the backend's notifications.</summary>
    public List<BlkifTestResponse> WaitForResponses(int count, TimeSpan? timeout = null)
    {
        var responses = new BlkifTestResponse[count];
        WaitForResponses(responses, timeout ?? TimeSpan.FromSeconds(30));
        return [.. responses];
    }

    /// <summary>Fills <paramref name="responses"/>, sleeping only on notifications; allocation-free (benchmarks).</summary>
    public void WaitForResponses(Span<BlkifTestResponse> responses, TimeSpan limit)
    {
        int got = 0;
        int count = responses.Length;
        while (got < count)
        {
            uint rspProd = Volatile.Read(ref Index(RspProdOffset)); // acquire: response bodies read after the index
            while (_rspCons != rspProd && got < count)
            {
                Span<byte> slot = SlotAt(_rspCons);
                responses[got++] = new BlkifTestResponse(BinaryPrimitives.ReadUInt64LittleEndian(slot), slot[8], BinaryPrimitives.ReadInt16LittleEndian(slot[10..]));
                _rspCons++;
            }

            if (got >= count)
            {
                break;
            }

            // RING_FINAL_CHECK_FOR_RESPONSES: ask for an event at the next response, then look once more.
            Volatile.Write(ref Index(RspEventOffset), _rspCons + 1);
            Interlocked.MemoryBarrier();
            if (Volatile.Read(ref Index(RspProdOffset)) != _rspCons)
            {
                continue;
            }

            if (!_notified.Wait(limit))
            {
                throw new TimeoutException($"no notification from the backend after {limit.TotalSeconds} s with {got} of {count} responses read (lost wake-up?)");
            }
        }
    }

    /// <summary>True if a response is already published beyond what was read (for "nothing was answered" checks).</summary>
    public bool HasUnreadResponse => Volatile.Read(ref Index(RspProdOffset)) != _rspCons;

    public uint RequestEvent => Volatile.Read(ref Index(ReqEventOffset));

    public void Dispose()
    {
        _ring.Dispose();
        _notified.Dispose();
    }

    private Span<byte> NextSlot()
    {
        if (_reqProdPvt - _rspCons >= (uint)SlotCount)
        {
            throw new InvalidOperationException("ring full: read responses first (RING_FULL)");
        }

        Span<byte> slot = SlotAt(_reqProdPvt++);
        slot.Clear();
        return slot;
    }

    private ref uint Index(int offset) => ref MemoryMarshal.Cast<byte, uint>(_ring.Slice(offset, 4))[0];

    private void OnNotified()
    {
        Interlocked.Increment(ref _notifications);
        _notified.Release();
    }
}
