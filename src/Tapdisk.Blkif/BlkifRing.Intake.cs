using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Blkif;

public sealed unsafe partial class BlkifRing
{
    private const int SectorSize = 512;
    private const int SectorsPerPage = BlkifRingGeometry.PageSize / SectorSize;
    private const short GnttabEagain = -12;

    /// <summary>
    /// Consumes requests (control-xen.md 3.7): one volatile read of req_prod per pass, the overrun check, copy-once, and the
    /// final check that re-arms req_event before sleeping. Stops early for want of a free slot or behind a barrier/flush; the
    /// completion that ends either condition brings the loop back here.
    /// </summary>
    /// <returns>True if any request was consumed.</returns>
    private bool Intake()
    {
        if (_broken || _stopRequested)
        {
            return false;
        }

        bool consumed = false;
        uint slotCount = (uint)_geometry.SlotCount;
        while (true)
        {
            // Acquire: the slot copies below cannot be hoisted above this read; pairs with the frontend's wmb() before it stores req_prod.
            uint reqProd = Volatile.Read(ref _sring->ReqProd);
            if (reqProd - _rspProdPvt > slotCount)
            {
                BreakRing("req_prod overran the ring", reqProd);
                return consumed;
            }

            while (_reqCons != reqProd)
            {
                if (_reqCons - _rspProdPvt >= slotCount || _freeCount == 0 || _drainSlot is not null)
                {
                    return consumed;
                }

                // The VBD's gate: while it is paused the request stays on the ring (tapdisk masks the ring on pause),
                // and the resume wakes this thread. Each consumed request holds its entry until Finish.
                if (!_backend.TryEnter())
                {
                    return consumed;
                }

                BlkifRequestSlot slot = _slots[_freeSlots[--_freeCount]];
                new ReadOnlySpan<byte>(_ringBase + _geometry.SlotOffset(_reqCons), _geometry.SlotSize).CopyTo(slot.Raw);
                _reqCons++;
                _requestsIn++;
                consumed = true;
                _alone = _reqCons == reqProd && SlotsInUse == 1;
                slot.InUse = true;
                _accepting = slot;
                Accept(slot);
                _accepting = null;
                _alone = false;
            }

            if (_drainSlot is not null)
            {
                return consumed;
            }

            // Final check: ask for an event when request req_cons+1 appears (release store)...
            Volatile.Write(ref _sring->ReqEvent, _reqCons + 1);

            // ...then a full fence so that store is visible before req_prod is read again; pairs with the frontend's mb()
            // between its req_prod store and its req_event load in RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.
            Interlocked.MemoryBarrier();
            if (Volatile.Read(ref _sring->ReqProd) == _reqCons)
            {
                return consumed;
            }
        }
    }

    private void BreakRing(string reason, uint reqProd)
    {
        Volatile.Write(ref _broken, true);
        _errorsMessage++;
        Log.RingBroken(_logger, Domid, Devid, reason, reqProd, _rspProdPvt, _geometry.SlotCount);
    }

    /// <summary>Decodes the private copy, validates it, and starts it or answers it at once. Never throws for guest input.</summary>
    private void Accept(BlkifRequestSlot slot)
    {
        slot.Reset();
        ReadOnlySpan<byte> raw = slot.Raw;
        bool is32 = _geometry.Is32;
        byte operation = raw[0];
        slot.Operation = operation;
        slot.Id = BinaryPrimitives.ReadUInt64LittleEndian(raw[(is32 ? 4 : 8)..]);
        slot.SectorNumber = BinaryPrimitives.ReadUInt64LittleEndian(raw[(is32 ? 12 : 16)..]);

        switch (operation)
        {
            case BlkifConstants.OpRead:
            case BlkifConstants.OpWrite:
            case BlkifConstants.OpWriteBarrier:
            case BlkifConstants.OpFlushDiskcache:
                CountReceived(slot, operation);
                AcceptDirect(slot, operation, raw[1]);
                return;
            case BlkifConstants.OpDiscard:
                CountReceived(slot, operation);
                AcceptDiscard(slot);
                return;
            case BlkifConstants.OpIndirect when _options.MaxIndirectSegments > 0:
                AcceptIndirect(slot);
                return;
            default:
                // Unknown, reserved, or indirect when not advertised: EOPNOTSUPP, the operation byte echoed (hostile table #16).
                Reject(slot, BlkifConstants.RspEopnotsupp, ref _errorsMessage, "operation not supported");
                return;
        }
    }

    private void AcceptDirect(BlkifRequestSlot slot, byte operation, byte segmentCount)
    {
        bool dataOptional = operation is BlkifConstants.OpWriteBarrier or BlkifConstants.OpFlushDiskcache;
        if (segmentCount > BlkifConstants.MaxSegmentsPerRequest || (segmentCount == 0 && !dataOptional))
        {
            // tapdisk accepts 12..32 here and then aborts the whole process on an assert (control-xen.md 4.9 #1): not us.
            Reject(slot, BlkifConstants.RspError, ref _errorsMessage, "bad nr_segments");
            return;
        }

        ReadOnlySpan<BlkifSegment> segments = MemoryMarshal.Cast<byte, BlkifSegment>(
            slot.Raw.AsSpan(_geometry.SegmentsOffset, segmentCount * sizeof(BlkifSegment)));
        segments.CopyTo(slot.Segments);
        slot.SegmentCount = segmentCount;
        StartData(slot, operation == BlkifConstants.OpRead ? SlotIo.Read : SlotIo.Write, operation);
    }

    private void AcceptIndirect(BlkifRequestSlot slot)
    {
        ReadOnlySpan<byte> raw = slot.Raw;
        bool is32 = _geometry.Is32;
        byte indirectOp = raw[1];
        int segmentCount = BinaryPrimitives.ReadUInt16LittleEndian(raw[2..]);
        if (indirectOp is not (BlkifConstants.OpRead or BlkifConstants.OpWrite))
        {
            Reject(slot, BlkifConstants.RspError, ref _errorsMessage, "indirect_op is not READ or WRITE");
            return;
        }

        // The response carries indirect_op, not 6: Linux blkfront checks it against the effective operation and
        // disables the whole disk on a mismatch, as Linux blkback answers (tests/xenlab/FINDINGS.md 1; the spec's
        // "echoes 6" is wrong).
        slot.Operation = indirectOp;
        CountReceived(slot, indirectOp);

        if (segmentCount == 0 || segmentCount > _options.MaxIndirectSegments)
        {
            Reject(slot, BlkifConstants.RspError, ref _errorsMessage, "bad indirect nr_segments");
            return;
        }

        int perPage = BlkifRingGeometry.SegmentsPerIndirectPage;
        int pages = (segmentCount + perPage - 1) / perPage;
        slot.IndirectPages ??= new AlignedMemory(BlkifRingGeometry.PageSize * ((_options.MaxIndirectSegments + perPage - 1) / perPage));
        byte* local = (byte*)slot.IndirectPages.Pin().Pointer;
        Span<GrantCopySegment> copies = slot.Copies.AsSpan(0, pages);
        ushort domid = (ushort)Domid;
        ReadOnlySpan<byte> grefs = raw[(is32 ? 24 : 28)..];
        for (int page = 0; page < pages; page++)
        {
            int count = Math.Min(perPage, segmentCount - (page * perPage));
            copies[page] = new GrantCopySegment
            {
                SourceRef = BinaryPrimitives.ReadUInt32LittleEndian(grefs[(page * 4)..]),
                SourceOffset = 0,
                SourceDomid = domid,
                DestVirt = (ulong)(local + (page * BlkifRingGeometry.PageSize)),
                Len = (ushort)(count * sizeof(BlkifSegment)),
                Flags = GrantCopySegment.SourceGref,
            };
        }

        // The descriptor pages are fetched into private memory first and validated only there (hostile table #19, #20).
        if (!CopyGrants(slot, copies, "indirect descriptor pages"))
        {
            Finish(slot, BlkifConstants.RspError);
            return;
        }

        for (int page = 0; page < pages; page++)
        {
            int count = Math.Min(perPage, segmentCount - (page * perPage));
            new ReadOnlySpan<BlkifSegment>(local + (page * BlkifRingGeometry.PageSize), count).CopyTo(slot.Segments.AsSpan(page * perPage));
        }

        slot.SegmentCount = segmentCount;
        StartData(slot, indirectOp == BlkifConstants.OpRead ? SlotIo.Read : SlotIo.Write, indirectOp);
    }

    private void AcceptDiscard(BlkifRequestSlot slot)
    {
        // feature-discard was not advertised for such a disk: Linux blkback answers EOPNOTSUPP, before any other check.
        if ((_backend.Capabilities & ImageCapabilities.Trim) == 0)
        {
            Reject(slot, BlkifConstants.RspEopnotsupp, ref _errorsMessage, "discard not supported by the image");
            return;
        }

        // The secure flag is ignored: we never advertise discard-secure, and the protocol says it is then ignored (hostile #22).
        ulong sectors = BinaryPrimitives.ReadUInt64LittleEndian(slot.Raw.AsSpan(_geometry.Is32 ? 20 : 24));
        int errno = ValidateSectors(BlockOperation.Trim, slot.SectorNumber, sectors);
        if (errno != 0)
        {
            RejectInvalid(slot, errno, "discard");
            return;
        }

        if (sectors == 0)
        {
            Finish(slot, BlkifConstants.RspOkay);
            return;
        }

        slot.DiscardSectors = (long)sectors;
        slot.Io = SlotIo.Discard;
        slot.Steps = SlotSteps.Io;
        StartSteps(slot);
    }

    /// <summary>Validates the private segments and the range, grant-copies write data in, then starts the steps.</summary>
    private void StartData(BlkifRequestSlot slot, SlotIo io, byte operation)
    {
        int count = slot.SegmentCount;
        Span<BlkifSegment> segments = slot.Segments.AsSpan(0, count);
        int lengthBytes = 0;
        foreach (ref readonly BlkifSegment s in segments)
        {
            // Both bounds: tapdisk checks only first <= last and overruns its bounce buffer otherwise (control-xen.md 4.9 #2).
            if (s.FirstSect > s.LastSect || s.LastSect >= SectorsPerPage)
            {
                Reject(slot, BlkifConstants.RspError, ref _errorsMessage, "segment sectors outside the page");
                return;
            }

            lengthBytes += (s.LastSect - s.FirstSect + 1) * SectorSize;
        }

        // An empty flush or barrier moves no data: its sector_number is whatever blkfront had at hand (Linux 6.1 sends
        // one past the end, and disables flushes for good when it fails: "empty flush op failed"; tests/xenlab
        // FINDINGS.md 3). Linux blkback range-checks only requests with sectors, and so do we.
        // A barrier or flush with data writes it: validated as a write (range, read-only).
        if (lengthBytes > 0)
        {
            int errno = ValidateSectors(io == SlotIo.Read ? BlockOperation.Read : BlockOperation.Write, slot.SectorNumber, (ulong)(lengthBytes / SectorSize));
            if (errno != 0)
            {
                RejectInvalid(slot, errno, io == SlotIo.Read ? "read" : "write");
                return;
            }
        }

        bool durable = operation is BlkifConstants.OpWriteBarrier or BlkifConstants.OpFlushDiskcache;

        slot.LengthBytes = lengthBytes;
        if (count > 0)
        {
            slot.Buffer ??= new AlignedMemory(BlkifRingGeometry.MaxDirectSegments * BlkifRingGeometry.PageSize);
            if (lengthBytes > slot.Buffer.Length)
            {
                // Only indirect requests get here; the pool keeps the buffers, so steady state still allocates nothing.
                slot.LargeBuffer = AlignedBufferPool.Shared.Rent(lengthBytes);
            }

            byte* local = (byte*)slot.ActiveBuffer.Pin().Pointer;
            Span<GrantCopySegment> copies = slot.Copies.AsSpan(0, count);
            ushort domid = (ushort)Domid;
            int offset = 0;
            for (int i = 0; i < count; i++)
            {
                BlkifSegment s = segments[i];
                int length = (s.LastSect - s.FirstSect + 1) * SectorSize;
                ref GrantCopySegment c = ref copies[i];
                c = default;
                c.Len = (ushort)length;
                if (io == SlotIo.Write)
                {
                    c.SourceRef = s.Gref;
                    c.SourceOffset = (ushort)(s.FirstSect * SectorSize);
                    c.SourceDomid = domid;
                    c.DestVirt = (ulong)(local + offset);
                    c.Flags = GrantCopySegment.SourceGref;
                }
                else
                {
                    c.SourceVirt = (ulong)(local + offset);
                    c.DestRef = s.Gref;
                    c.DestOffset = (ushort)(s.FirstSect * SectorSize);
                    c.DestDomid = domid;
                    c.Flags = GrantCopySegment.DestGref;
                }

                offset += length;
            }

            if (io == SlotIo.Write && !CopyGrants(slot, copies, "write data"))
            {
                Finish(slot, BlkifConstants.RspError);
                return;
            }
        }

        slot.Io = count > 0 ? io : SlotIo.None;
        slot.Steps = count > 0 ? SlotSteps.Io : SlotSteps.None;
        if (io == SlotIo.Read && count > 0)
        {
            slot.Steps |= SlotSteps.CopyOut;
        }

        if (operation == BlkifConstants.OpWriteBarrier)
        {
            // tapdisk answers barriers without any flush (control-xen.md 4.7): here a barrier is drain, flush, write, flush.
            slot.Steps |= SlotSteps.PreFlush | (count > 0 ? SlotSteps.PostFlush : SlotSteps.None);
        }
        else if (operation == BlkifConstants.OpFlushDiskcache)
        {
            slot.Steps |= SlotSteps.PostFlush;
        }

        if (durable)
        {
            if (_backend.IsReadOnly)
            {
                // Nothing of ours can be dirty on a read-only disk; still answered after the drain, in order.
                slot.Steps &= ~(SlotSteps.PreFlush | SlotSteps.PostFlush);
            }

            // Barrier and flush drain: they start once every older request is done, and nothing newer is pulled meanwhile.
            _drainSlot = slot;
            return;
        }

        StartSteps(slot);
    }

    /// <summary>
    /// The VBD's one validator, given sectors from the ring: values no byte offset can hold are outside any disk, so
    /// the conversion cannot wrap (hostile table #13, #14).
    /// </summary>
    private int ValidateSectors(BlockOperation operation, ulong sector, ulong count)
    {
        const ulong MaxSectors = long.MaxValue / SectorSize;
        if (sector > MaxSectors || count > MaxSectors)
        {
            return operation == BlockOperation.Read ? Errno.EINVAL : Errno.ENOSPC;
        }

        return _backend.Validate(operation, (long)sector * SectorSize, (long)count * SectorSize);
    }

    /// <summary>Answers a request the validator refused: EOPNOTSUPP for what the disk cannot do, else BLKIF_RSP_ERROR.</summary>
    /// <remarks>The reasons are constants: a hostile frontend sending nothing but bad requests allocates nothing.</remarks>
    private void RejectInvalid(BlkifRequestSlot slot, int errno, string what)
    {
        if (errno == Errno.EOPNOTSUPP)
        {
            Reject(slot, BlkifConstants.RspEopnotsupp, ref _errorsMessage, "operation not supported by the image");
        }
        else if (errno == Errno.EPERM)
        {
            Reject(slot, BlkifConstants.RspError, ref _errorsVbd, what == "read" ? "read refused" : "write to a read-only disk");
        }
        else
        {
            Reject(slot, BlkifConstants.RspError, ref _errorsVbd, what == "read" ? "read beyond the end of the disk" : "write beyond the end of the disk");
        }
    }

    /// <summary>One GRANT_COPY for all segments; every status checked; GNTST_eagain retried a bounded number of times.</summary>
    private bool CopyGrants(BlkifRequestSlot slot, Span<GrantCopySegment> copies, string what)
    {
        for (int attempt = 0; ; attempt++)
        {
            int errno = _grants.GrantCopy(copies);
            if (errno != 0)
            {
                _errorsMap++;
                if (MayLog())
                {
                    Log.GrantCopyFailed(_logger, Domid, Devid, slot.Id, $"{what}: ioctl errno {errno}");
                }

                return false;
            }

            bool retry = false;
            short bad = 0;
            foreach (ref readonly GrantCopySegment c in copies)
            {
                if (c.Status == GnttabEagain)
                {
                    retry = true;
                }
                else if (c.Status != 0)
                {
                    bad = c.Status;
                    break;
                }
            }

            if (bad == 0 && !retry)
            {
                return true;
            }

            if (bad != 0 || attempt >= _options.GrantCopyRetries)
            {
                _errorsMap++;
                if (MayLog())
                {
                    Log.GrantCopyFailed(_logger, Domid, Devid, slot.Id, $"{what}: GNTST {(bad != 0 ? bad : GnttabEagain)}");
                }

                return false;
            }
        }
    }

    private void Reject(BlkifRequestSlot slot, short status, ref long counter, string reason)
    {
        counter++;
        if (MayLog())
        {
            Log.RequestRejected(_logger, Domid, Devid, slot.Id, slot.Operation, reason);
        }

        Finish(slot, status);
    }
}
