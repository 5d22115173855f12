using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Blkif;

public sealed unsafe partial class BlkifRing
{
    private const SlotSteps ImageSteps = SlotSteps.PreFlush | SlotSteps.Io | SlotSteps.PostFlush;

    /// <summary>
    /// Ring thread: hands a validated slot's image steps to the VBD's I/O workers (within its share), so the ring keeps
    /// taking requests while they run; a slot with none left is answered at once.
    /// </summary>
    private void StartSteps(BlkifRequestSlot slot)
    {
        if ((slot.Steps & ImageSteps) != 0)
        {
            if (!_backend.MayRunInline(InlineQuestion(slot), (long)slot.SectorNumber * SectorSize, slot.LengthBytes, _alone))
            {
                _backend.Dispatch(slot);
                return;
            }

            // Alone on the ring, or a stack that never blocks: run it here, as blktap's one thread does, saving the
            // two wake-ups of a hop to a worker and back. A request the frontend adds meanwhile is taken right after.
            _alone = false;
            if (!RunImageStepsInline(slot))
            {
                return;
            }
        }

        Complete(slot);
    }

    /// <summary>The operation whose blocking decides where a slot runs (a flush-only request asks about its flush).</summary>
    private static BlockOperation InlineQuestion(BlkifRequestSlot slot) => slot.Io switch
    {
        SlotIo.Read => BlockOperation.Read,
        SlotIo.Write => BlockOperation.Write,
        SlotIo.Discard => BlockOperation.Trim,
        _ => BlockOperation.Flush,
    };

    /// <summary>
    /// I/O worker (or the thread that completed the previous step): runs the image steps in order until one goes
    /// asynchronous or all are done, then hands the slot back to the ring thread.
    /// </summary>
    /// <remarks>Each step's ValueTask is consumed exactly once: read here when already complete, else by the continuation.</remarks>
#pragma warning disable CA2012
    internal void RunImageSteps(BlkifRequestSlot slot)
    {
        if (RunImageStepsInline(slot))
        {
            PushCompleted(slot);
        }
    }

    /// <summary>Runs the image steps; true when all are done here, false when one went asynchronous (its continuation goes on).</summary>
    private bool RunImageStepsInline(BlkifRequestSlot slot)
    {
        while (slot.IoErrno == 0)
        {
            ValueTask step;
            if ((slot.Steps & SlotSteps.PreFlush) != 0)
            {
                slot.Steps &= ~SlotSteps.PreFlush;
                step = _backend.FlushAsync();
            }
            else if ((slot.Steps & SlotSteps.Io) != 0)
            {
                slot.Steps &= ~SlotSteps.Io;
                step = StartIo(slot);
            }
            else if ((slot.Steps & SlotSteps.PostFlush) != 0)
            {
                slot.Steps &= ~SlotSteps.PostFlush;
                step = _backend.FlushAsync();
            }
            else
            {
                break;
            }

            if (!step.IsCompleted)
            {
                slot.Pending = step;
                step.GetAwaiter().UnsafeOnCompleted(slot.Continuation);
                return false;
            }

            slot.IoErrno = ResultOf(step);
        }

        return true;
    }
#pragma warning restore CA2012

    private ValueTask StartIo(BlkifRequestSlot slot)
    {
        long offsetBytes = (long)slot.SectorNumber * SectorSize;
        return slot.Io switch
        {
            SlotIo.Read => _backend.ReadAsync(offsetBytes, slot.ActiveBuffer.Memory[..slot.LengthBytes]),
            SlotIo.Write => _backend.WriteAsync(offsetBytes, slot.ActiveBuffer.Memory[..slot.LengthBytes]),
            SlotIo.Discard => _backend.TrimAsync(offsetBytes, slot.DiscardSectors * SectorSize),
            _ => ValueTask.CompletedTask,
        };
    }

    private static int ResultOf(ValueTask step)
    {
        try
        {
            step.GetAwaiter().GetResult();
            return 0;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            int errno = StorageErrors.ToErrno(e);
            return errno == 0 ? Errno.EIO : errno;
        }
    }

    /// <summary>A step finished asynchronously on some thread: record it and go on with the slot's next step there.</summary>
    internal void OnStepCompleted(BlkifRequestSlot slot)
    {
        ValueTask step = slot.Pending;
        slot.Pending = default;
        slot.IoErrno = ResultOf(step);
        RunImageSteps(slot);
    }

    /// <summary>The slot's image work is over: hand it to the ring thread, waking it if it may be asleep.</summary>
    private void PushCompleted(BlkifRequestSlot slot)
    {
        BlkifRequestSlot? head;
        do
        {
            head = Volatile.Read(ref _completed);
            slot.Next = head;
        }
        while (Interlocked.CompareExchange(ref _completed, slot, head) != head); // full fence: slot fields published with it

        if (head is null)
        {
            // First entry since the ring thread last emptied the stack: it may be asleep. Later pushes find it awake or
            // about to look. A completion run by the ring thread's own loop needs no wake-up: it looks next anyway.
            if (Thread.CurrentThread != _thread)
            {
                Wake();
            }
        }
    }

    /// <summary>Ring thread: answers a slot whose image steps are done (copying read data out to the guest first).</summary>
    private void Complete(BlkifRequestSlot slot)
    {
        if (slot.IoErrno != 0)
        {
            _errorsImage++;
            if (MayLog())
            {
                Log.ImageFailed(_logger, Domid, Devid, slot.Id, slot.Operation, slot.IoErrno);
            }

            Finish(slot, slot.IoErrno == Errno.EOPNOTSUPP ? BlkifConstants.RspEopnotsupp : BlkifConstants.RspError);
            return;
        }

        if ((slot.Steps & SlotSteps.CopyOut) != 0)
        {
            slot.Steps &= ~SlotSteps.CopyOut;
            bool copied = CopyGrants(slot, slot.Copies.AsSpan(0, slot.SegmentCount), "read data");
            Finish(slot, copied ? BlkifConstants.RspOkay : BlkifConstants.RspError);
            return;
        }

        Finish(slot, BlkifConstants.RspOkay);
    }

    private void ProcessCompletions()
    {
        BlkifRequestSlot? slot = Interlocked.Exchange(ref _completed, null);
        while (slot is not null)
        {
            BlkifRequestSlot? next = slot.Next;
            slot.Next = null;
            try
            {
                Complete(slot);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One slot's failure must not lose the others taken off the stack with it, nor its own gate entry.
                Log.LoopFailed(_logger, Domid, Devid, e);
                if (slot.InUse)
                {
                    Finish(slot, BlkifConstants.RspError);
                }
            }
            slot = next;
        }
    }

    /// <summary>A pending barrier/flush starts once it is the only request left.</summary>
    private bool TryStartDrain()
    {
        BlkifRequestSlot? slot = _drainSlot;
        if (slot is not null && !slot.DrainStarted && SlotsInUse == 1)
        {
            slot.DrainStarted = true;
            StartSteps(slot);
            return true;
        }

        return false;
    }

    /// <summary>Writes the response into the next response slot (published later, once per batch) and frees the request slot.</summary>
    private void Finish(BlkifRequestSlot slot, short status)
    {
        CountFinished(slot, status);
        if (!_stopRequested)
        {
            // id@0, operation@8, status@10 in both ABIs; the rest of the slot is left alone (control-xen.md 3.3).
            byte* response = _ringBase + _geometry.SlotOffset(_rspProdPvt);
            Unsafe.WriteUnaligned(response, slot.Id);
            response[8] = slot.Operation;
            Unsafe.WriteUnaligned(response + 10, status);
            _rspProdPvt++;
            _responsesOut++;
        }

        ReleaseSlot(slot);
    }

    /// <summary>Ring thread: puts the slot back on the free list and the request out of the VBD's gate.</summary>
    private void ReleaseSlot(BlkifRequestSlot slot)
    {
        if (_drainSlot == slot)
        {
            _drainSlot = null;
        }

        if (slot.LargeBuffer is { } large)
        {
            slot.LargeBuffer = null;
            AlignedBufferPool.Shared.Return(large);
        }

        slot.InUse = false;
        _freeSlots[_freeCount++] = slot.Index;
        _backend.Exit();
    }

    /// <summary>RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish rsp_prod once per batch, notify only if the frontend asked.</summary>
    private void Publish()
    {
        uint newProd = _rspProdPvt;
        uint oldProd = _rspProdPublished;
        if (newProd == oldProd)
        {
            return;
        }

        // Release: the response bodies become visible before the index; pairs with the frontend's rmb() after it reads rsp_prod.
        Volatile.Write(ref _sring->RspProd, newProd);
        _rspProdPublished = newProd;

        // Full fence: rsp_prod must be visible before rsp_event is read; pairs with the mb() in the frontend's
        // RING_FINAL_CHECK_FOR_RESPONSES between its rsp_event store and its rsp_prod re-read.
        Interlocked.MemoryBarrier();
        uint rspEvent = Volatile.Read(ref _sring->RspEvent);
        if (newProd - rspEvent < newProd - oldProd)
        {
            _kicksOut++;
            int errno = _channel.Notify(_localPort);
            if (errno != 0 && MayLog())
            {
                Log.EventChannelError(_logger, Domid, Devid, errno);
            }
        }
    }
}
