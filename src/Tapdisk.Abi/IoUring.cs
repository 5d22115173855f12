using System.Runtime.InteropServices;
using static Tapdisk.Abi.Interop.IoUring;

namespace Tapdisk.Abi;

/// <summary>The io_uring operations the engine issues (values are the kernel's opcodes).</summary>
public enum IoUringOp : byte
{
    Nop = IORING_OP_NOP,
    Fsync = IORING_OP_FSYNC,
    ReadFixed = IORING_OP_READ_FIXED,
    WriteFixed = IORING_OP_WRITE_FIXED,
    PollAdd = IORING_OP_POLL_ADD,
    Fallocate = IORING_OP_FALLOCATE,
    Read = IORING_OP_READ,
    Write = IORING_OP_WRITE,
    Send = IORING_OP_SEND,
    Recv = IORING_OP_RECV,
}

/// <summary>
/// One io_uring instance: the submission and completion rings mapped into this process. Not thread-safe: one thread
/// prepares, submits and reaps (the kernel is told so with SINGLE_ISSUER and DEFER_TASKRUN where it knows them, so
/// completions are posted only when that thread enters the kernel to wait, never by an interrupting task-work run).
/// Memory a request names must stay valid until its completion is reaped.
/// </summary>
public sealed unsafe class IoUring : IDisposable
{
    /// <summary>fsync's flag for fdatasync semantics (the <c>opFlags</c> of an <see cref="IoUringOp.Fsync"/>).</summary>
    public const uint FsyncDataSync = IORING_FSYNC_DATASYNC;

    private readonly SafeFdHandle _fd;
    private readonly MappedRegion _rings;
    private readonly MappedRegion _sqes;
    private readonly uint* _sqHead;
    private readonly uint* _sqTail;
    private readonly uint _sqMask;
    private readonly uint* _cqHead;
    private readonly uint* _cqTail;
    private readonly uint _cqMask;
    private readonly Cqe* _cqes;
    private readonly Sqe* _sqeArray;
    private uint _sqeTail;
    private uint _submittedTail;
    private uint _cqLocalHead;

    private IoUring(SafeFdHandle fd, in Params p, MappedRegion rings, MappedRegion sqes)
    {
        _fd = fd;
        _rings = rings;
        _sqes = sqes;
        byte* ring = rings.Address;
        _sqHead = (uint*)(ring + p.SqOff.Head);
        _sqTail = (uint*)(ring + p.SqOff.Tail);
        _sqMask = *(uint*)(ring + p.SqOff.RingMask);
        _cqHead = (uint*)(ring + p.CqOff.Head);
        _cqTail = (uint*)(ring + p.CqOff.Tail);
        _cqMask = *(uint*)(ring + p.CqOff.RingMask);
        _cqes = (Cqe*)(ring + p.CqOff.Cqes);
        _sqeArray = (Sqe*)sqes.Address;
        SubmissionEntries = p.SqEntries;
        CompletionEntries = p.CqEntries;
        DeferredTaskRun = (p.Flags & IORING_SETUP_DEFER_TASKRUN) != 0;

        // The index array stays the identity: entry i of the ring always names SQE i.
        uint* array = (uint*)(ring + p.SqOff.Array);
        for (uint i = 0; i < p.SqEntries; i++)
        {
            array[i] = i;
        }

        _sqeTail = _submittedTail = *_sqTail;
        _cqLocalHead = *_cqHead;
    }

    public uint SubmissionEntries { get; }

    public uint CompletionEntries { get; }

    /// <summary>Whether the kernel runs completion work only when the owning thread waits (Linux 6.1+).</summary>
    public bool DeferredTaskRun { get; }

    /// <summary>Prepared and not yet handed to the kernel.</summary>
    public int Unsubmitted => (int)(_sqeTail - _submittedTail);

    /// <summary>
    /// Sets up a ring of at least <paramref name="entries"/> submission slots (the completion ring is twice that);
    /// 0 or the errno (ENOSYS: no io_uring; EPERM: kernel.io_uring_disabled or seccomp; ENOMEM: locked-memory limit).
    /// Asks for the single-issuer, deferred task-run mode first and falls back to older modes on EINVAL.
    /// </summary>
    public static int TryCreate(uint entries, out IoUring? ring)
    {
        ring = null;
        uint[] modes = [IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_COOP_TASKRUN, 0];
        int errno = Errno.EINVAL;
        foreach (uint mode in modes)
        {
            Params p = default;
            p.Flags = mode;
            long fd = Interop.IoUring.Setup(SYS_io_uring_setup, entries, &p);
            if (fd < 0)
            {
                errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINVAL)
                {
                    continue;
                }

                return errno;
            }

            var handle = new SafeFdHandle((int)fd, ownsHandle: true);
            if ((p.Features & (IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP)) != (IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP))
            {
                // Before Linux 5.5: no READ/WRITE opcodes either. Not worth a second mapping scheme.
                handle.Dispose();
                return Errno.ENOSYS;
            }

            int ringBytes = (int)Math.Max(p.SqOff.Array + (p.SqEntries * sizeof(uint)), p.CqOff.Cqes + (p.CqEntries * (uint)sizeof(Cqe)));
            errno = Map(handle, ringBytes, IORING_OFF_SQ_RING, out MappedRegion? rings);
            if (errno != 0)
            {
                handle.Dispose();
                return errno;
            }

            errno = Map(handle, (int)(p.SqEntries * (uint)sizeof(Sqe)), IORING_OFF_SQES, out MappedRegion? sqes);
            if (errno != 0)
            {
                rings!.Dispose();
                handle.Dispose();
                return errno;
            }

            ring = new IoUring(handle, p, rings!, sqes!);
            return 0;
        }

        return errno;
    }

    /// <summary>
    /// Prepares one request; false when the submission ring is full (submit, then try again). A READ_FIXED or
    /// WRITE_FIXED names the registered buffer slot <paramref name="bufferIndex"/> that holds [address, address + length).
    /// </summary>
    public bool TryPrepare(IoUringOp op, int fd, ulong address, uint length, ulong offset, uint opFlags, ulong userData, ushort bufferIndex = 0)
    {
        uint head = Volatile.Read(ref *_sqHead);
        if (_sqeTail - head >= SubmissionEntries)
        {
            return false;
        }

        Sqe* sqe = _sqeArray + (_sqeTail & _sqMask);
        *sqe = default;
        sqe->Opcode = (byte)op;
        sqe->Fd = fd;
        sqe->Off = offset;
        sqe->Addr = address;
        sqe->Len = length;
        sqe->OpFlags = opFlags;
        sqe->UserData = userData;
        sqe->BufIndex = bufferIndex;
        _sqeTail++;
        return true;
    }

    /// <summary>
    /// Hands prepared requests to the kernel and, when <paramref name="waitFor"/> is above 0, waits until that many
    /// completions are ready. Returns 0 or the errno (EINTR: a signal; EBUSY/EAGAIN: completions must be reaped first).
    /// </summary>
    public int Enter(uint waitFor)
    {
        uint toSubmit = _sqeTail - _submittedTail;
        if (toSubmit == 0 && waitFor == 0 && !DeferredTaskRun)
        {
            return 0;
        }

        // Release: the SQEs written above are visible before the kernel sees the new tail.
        Volatile.Write(ref *_sqTail, _sqeTail);
        uint flags = waitFor > 0 || DeferredTaskRun ? IORING_ENTER_GETEVENTS : 0;
        long n = Interop.IoUring.Enter(SYS_io_uring_enter, _fd.Fd, toSubmit, waitFor, flags, null, 0);
        if (n < 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        _submittedTail += (uint)n;
        return 0;
    }

    /// <summary>
    /// Registers an empty table of <paramref name="slots"/> buffer slots (IORING_REGISTER_BUFFERS2, sparse: Linux
    /// 5.19+), filled later by <see cref="TryUpdateBuffer"/>. 0 or the errno (EINVAL on older kernels; ENOMEM or
    /// EPERM where locked memory is limited).
    /// </summary>
    public int TryRegisterBufferTable(uint slots)
    {
        var register = new RsrcRegister { Nr = slots, Flags = IORING_RSRC_REGISTER_SPARSE };
        long r = Interop.IoUring.Register(SYS_io_uring_register, _fd.Fd, IORING_REGISTER_BUFFERS2, &register, (uint)sizeof(RsrcRegister));
        return r < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>
    /// Puts [address, address + length) in buffer slot <paramref name="slot"/>, replacing (and unpinning) what it held:
    /// the kernel pins the pages once here instead of once per request. 0 or the errno.
    /// </summary>
    public int TryUpdateBuffer(uint slot, ulong address, ulong length)
    {
        var iov = new Interop.Libc.IoVec { Base = (void*)address, Length = (nuint)length };
        var update = new RsrcUpdate2 { Offset = slot, Data = (ulong)&iov, Nr = 1 };
        long r = Interop.IoUring.Register(SYS_io_uring_register, _fd.Fd, IORING_REGISTER_BUFFERS_UPDATE, &update, (uint)sizeof(RsrcUpdate2));
        return r < 0 ? Marshal.GetLastPInvokeError() : r == 1 ? 0 : Errno.EIO;
    }

    /// <summary>Whether a completion is waiting to be reaped.</summary>
    public bool HasCompletion => _cqLocalHead != Volatile.Read(ref *_cqTail);

    /// <summary>Takes the next completion, if one is ready.</summary>
    public bool TryReap(out ulong userData, out int result)
    {
        // Acquire (in HasCompletion): the CQE's contents are read only after the tail that published them.
        if (!HasCompletion)
        {
            userData = 0;
            result = 0;
            return false;
        }

        Cqe* cqe = _cqes + (_cqLocalHead & _cqMask);
        userData = cqe->UserData;
        result = cqe->Res;
        _cqLocalHead++;

        // Release: the slot is given back only after it was read.
        Volatile.Write(ref *_cqHead, _cqLocalHead);
        return true;
    }

    /// <summary>The address a pinned buffer's request names (callers above this layer stay free of pointers).</summary>
    public static ulong AddressOf(in System.Buffers.MemoryHandle pinned) => (ulong)pinned.Pointer;

    public void Dispose()
    {
        _sqes.Dispose();
        _rings.Dispose();
        _fd.Dispose();
    }

    private static int Map(SafeFdHandle fd, int length, long offset, out MappedRegion? region)
    {
        region = null;
        void* address = Interop.Libc.Mmap(null, (nuint)length, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_SHARED | Interop.Libc.MAP_POPULATE, fd.Fd, offset);
        if (address == (void*)-1)
        {
            return Marshal.GetLastPInvokeError();
        }

        region = new MappedRegion(address, length);
        return 0;
    }
}
