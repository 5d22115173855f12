using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// A thread's io_uring event loop (blktap's shape: the thread that parsed a request submits its I/O and answers it
/// when it completes, with no hop in between). The owning thread creates it, runs <see cref="RunOnce"/> or
/// <see cref="Run{T}"/> whenever it would otherwise sleep, and every I/O it issues meanwhile (through
/// <see cref="ImageFile"/> while <see cref="Current"/> is this loop) is batched into the next wait's one system call.
/// Completions run their continuations on this thread. Other threads never touch the ring; they may only
/// <see cref="Wake"/> it.
/// </summary>
public sealed class IoLoop : IDisposable
{
    private const uint Entries = 128;
    private const ulong WakeToken = ulong.MaxValue;

    /// <summary>The variable that turns registered buffers off ("0"), for A/B runs and kernels that misbehave.</summary>
    public const string FixedBuffersVariable = "TAPDISK_IO_FIXED_BUFFERS";

    // Registered buffers: an O_DIRECT request otherwise pins its pages and lets them go each time (11-14% of fio's
    // CPU per 4 KiB read, bench/RESULTS.md; 14% of tapdisk's samples in nbdcopy's 256 KiB reads). As many slots as the
    // ring has entries, pooled buffers up to 1 MiB, and at most 32 MiB registered per loop: a buffer the pool frees
    // while registered stays pinned until its slot is reused, so the budget bounds that too.
    private const int BufferSlots = (int)Entries;
    private const int MaxFixedBufferBytes = 1024 * 1024;
    private const long FixedBufferBudgetBytes = 32L * 1024 * 1024;
    private static readonly bool s_fixedBuffersAllowed = Environment.GetEnvironmentVariable(FixedBuffersVariable) != "0";

    [ThreadStatic]
    private static IoLoop? s_current;

    [ThreadStatic]
    private static int s_synchronous;

    private readonly IoUring _ring;
    private readonly EventFd _wake = new(nonBlocking: false);
    private readonly AlignedMemory _wakeValue = new(sizeof(ulong), sizeof(ulong));
    private readonly Action _wakeAction;
    private readonly Thread _owner;
    private Operation[] _operations = new Operation[Entries];
    private readonly Stack<Operation> _free = new();
    private readonly List<Operation> _background = [];

    // Completions taken off the ring while a submission waited for room; they run at the loop's next pass.
    private readonly Queue<(ulong Token, int Result)> _deferred = new();

    // Work other threads hand to this loop (a request it started, answered on an NBD client's receive thread), run at
    // its next pass. Two lists swapped under the lock: posting allocates nothing once they have grown.
    private readonly Lock _postedLock = new();
    private List<IThreadPoolWorkItem> _posted = [];
    private List<IThreadPoolWorkItem> _postedRunning = [];
    private int _postedCount;
    private bool _postClosed;
    private bool _runningPosted;

    // Work that waits for the end of the pass running completions (replies gathered into one send).
    private readonly List<IPassEndListener> _passEnd = [];
    private bool _inPass;
    private int _created;
    private int _lastStarted;
    private int _inFlight;
    private bool _wakeArmed;
    private PollBudget _poll = PollBudget.FromEnvironment();
    private bool _disposed;

    // Slot i holds _slotBuffer[i] (by identity: a buffer freed and another allocated at its address never match);
    // _slotUsed is CLOCK's reference bit, so a working set that fits stays registered.
    private bool _fixedBuffers;
    private AlignedMemory?[]? _slotBuffer;
    private bool[]? _slotUsed;
    private Dictionary<AlignedMemory, int>? _slotOf;
    private readonly Stack<int> _freeSlots = new();
    private long _registeredBytes;
    private int _slotHand;

    private IoLoop(IoUring ring)
    {
        _ring = ring;
        _owner = Thread.CurrentThread;
        _wakeAction = Wake;
    }

    /// <summary>
    /// The loop of the calling thread, unless none or inside <see cref="Synchronous"/>: I/O issued here may then go
    /// through the ring and complete later on this thread.
    /// </summary>
    public static IoLoop? Current => s_synchronous == 0 ? s_current : null;

    /// <summary>
    /// True while this loop runs the completions of one pass (on its own thread): what they produce together can be
    /// finished once, after the last, through <see cref="AtPassEnd"/>.
    /// </summary>
    public bool InPass => _inPass;

    /// <summary>I/O of this loop still in the kernel (the wake-up read excluded).</summary>
    public int InFlight => _inFlight;

    /// <summary>Whether reads and writes into pooled buffers use registered buffers (READ_FIXED, WRITE_FIXED).</summary>
    public bool FixedBuffers => _fixedBuffers;

    /// <summary>Buffers registered with this loop's ring now.</summary>
    public int RegisteredBuffers => _slotOf?.Count ?? 0;

    /// <summary>A loop for the calling thread when the process's engine is io_uring; null on the fallback engine.</summary>
    public static IoLoop? TryCreateForCurrentThread()
    {
        if (IoEngine.Kind != IoEngineKind.IoUring || s_current is not null)
        {
            return null;
        }

        int errno = IoUring.TryCreate(Entries, out IoUring? ring);
        if (errno != 0)
        {
            // The engine passed its self-test at start-up, so this is a per-ring limit (locked memory, fds).
            throw new ErrnoIOException(errno, null, "io_uring_setup");
        }

        var loop = new IoLoop(ring!);
        if (s_fixedBuffersAllowed && ring!.TryRegisterBufferTable(BufferSlots) == 0)
        {
            // Before Linux 5.19 (no sparse tables) or where locked memory is short, requests name plain buffers.
            loop._fixedBuffers = true;
            loop._slotBuffer = new AlignedMemory?[BufferSlots];
            loop._slotUsed = new bool[BufferSlots];
            loop._slotOf = new Dictionary<AlignedMemory, int>(BufferSlots, ReferenceEqualityComparer.Instance);
            for (int slot = BufferSlots - 1; slot >= 0; slot--)
            {
                loop._freeSlots.Push(slot);
            }
        }

        s_current = loop;
        return loop;
    }

    /// <summary>
    /// Marks a stretch of code that blocks for its I/O (sync-over-async on a loop thread, where a ring request could
    /// never be reaped): I/O issued inside it is synchronous. Dispose the scope to end it.
    /// </summary>
    public static SynchronousScope Synchronous()
    {
        s_synchronous++;
        return default;
    }

    /// <summary>Starts a request on this loop; the ValueTask gives the kernel's result (bytes, or a negative errno).</summary>
    public ValueTask<int> StartAsync(IoUringOp op, SafeHandle fd, Memory<byte> buffer, ulong offset, uint opFlags = 0)
    {
        Operation operation = Rent();
        try
        {
            operation.Pin = buffer.Pin();
        }
        catch
        {
            operation.Release();
            throw;
        }

        ushort slot = 0;
        if (_fixedBuffers && op is IoUringOp.Read or IoUringOp.Write && TryGetSlot(buffer, out slot))
        {
            op = op == IoUringOp.Read ? IoUringOp.ReadFixed : IoUringOp.WriteFixed;
        }

        return Start(operation, op, fd, IoUring.AddressOf(operation.Pin), (uint)buffer.Length, offset, opFlags, slot);
    }

    /// <summary>
    /// The registered slot of the pooled buffer <paramref name="buffer"/> lies in, registering it when a slot and the
    /// budget allow (evicting buffers not used since CLOCK's hand last passed); false to send the request with a
    /// plain buffer.
    /// </summary>
    private bool TryGetSlot(Memory<byte> buffer, out ushort slot)
    {
        slot = 0;
        if (!MemoryMarshal.TryGetMemoryManager<byte, AlignedMemory>(buffer, out AlignedMemory? owner) || owner.Length > MaxFixedBufferBytes)
        {
            return false;
        }

        if (_slotOf!.TryGetValue(owner, out int found))
        {
            _slotUsed![found] = true;
            slot = (ushort)found;
            return true;
        }

        // A prepared request names its slot by number, which the kernel resolves when it first issues the request (at
        // submission): a slot must never change while one waits unsubmitted, or it would read through another
        // buffer's registration, or none (EFAULT). Submit them first; if the kernel takes not all, a plain buffer.
        if (_ring.Unsubmitted != 0 && (_ring.Enter(0) != 0 || _ring.Unsubmitted != 0))
        {
            return false;
        }

        // A bounded sweep: a working set larger than the table must not pay a registration per request.
        for (int step = 0; step < 8 && (_freeSlots.Count == 0 || _registeredBytes + owner.Length > FixedBufferBudgetBytes); step++)
        {
            int at = _slotHand;
            _slotHand = (_slotHand + 1) % BufferSlots;
            if (_slotUsed![at])
            {
                _slotUsed[at] = false;
            }
            else if (_slotBuffer![at] is { } held && !Unregister(at, held))
            {
                return false;
            }
        }

        if (_freeSlots.Count == 0 || _registeredBytes + owner.Length > FixedBufferBudgetBytes)
        {
            return false;
        }

        int free = _freeSlots.Peek();

        // Submitted requests that still use a cleared or replaced slot are safe: they hold the old registration
        // until they complete.
        using (MemoryHandle pinned = owner.Pin())
        {
            if (_ring.TryUpdateBuffer((uint)free, IoUring.AddressOf(pinned), (ulong)owner.Length) != 0)
            {
                // Locked memory ran out (or the kernel refused): stop asking, plain buffers from here on.
                _fixedBuffers = false;
                return false;
            }
        }

        _freeSlots.Pop();
        _slotBuffer![free] = owner;
        _slotUsed![free] = true;
        _slotOf.Add(owner, free);
        _registeredBytes += owner.Length;
        slot = (ushort)free;
        return true;
    }

    /// <summary>Empties slot <paramref name="at"/> (its pages unpinned once no request uses them); false if the kernel refused.</summary>
    private bool Unregister(int at, AlignedMemory held)
    {
        if (_ring.TryUpdateBuffer((uint)at, 0, 0) != 0)
        {
            _fixedBuffers = false;
            return false;
        }

        _slotOf!.Remove(held);
        _slotBuffer![at] = null;
        _slotUsed![at] = false;
        _registeredBytes -= held.Length;
        _freeSlots.Push(at);
        return true;
    }

    /// <summary>
    /// Starts fallocate(2) on this loop; the result is 0 or a negative errno. The kernel runs it on one of its
    /// workers (it may take as long as the range is big), so this thread never waits for it.
    /// </summary>
    public ValueTask<int> StartFallocateAsync(SafeHandle fd, FallocateMode mode, long offsetBytes, long lengthBytes)
    {
        // IORING_OP_FALLOCATE carries the length in addr and the mode in len (liburing's io_uring_prep_fallocate).
        uint flags = (uint)PosixFile.FallocateFlags(mode);
        return Start(Rent(), IoUringOp.Fallocate, fd, (ulong)lengthBytes, flags, (ulong)offsetBytes, 0);
    }

    private ValueTask<int> Start(Operation operation, IoUringOp op, SafeHandle fd, ulong address, uint length, ulong offset, uint opFlags, ushort bufferIndex = 0)
    {
        bool addedRef = false;
        try
        {
            fd.DangerousAddRef(ref addedRef);
            operation.Fd = fd;
            Prepare(op, (int)fd.DangerousGetHandle(), address, length, offset, opFlags, (ulong)operation.Index, bufferIndex);
        }
        catch
        {
            operation.Release();
            throw;
        }

        _inFlight++;
        _lastStarted = operation.Index;
        return new ValueTask<int>(operation, operation.Version);
    }

    /// <summary>
    /// Waits (through the ring) until <paramref name="fd"/> polls with one of <paramref name="events"/>; the result is
    /// the events seen or a negative errno. A background wait: not counted in <see cref="InFlight"/>, and simply
    /// dropped if the loop is disposed first.
    /// </summary>
    public ValueTask<int> PollAsync(SafeHandle fd, uint events)
    {
        ValueTask<int> poll = StartAsync(IoUringOp.PollAdd, fd, Memory<byte>.Empty, 0, events);
        _inFlight--;
        Operation operation = _operations[_lastStarted];
        operation.Background = true;
        _background.Add(operation);
        return poll;
    }

    /// <summary>Submits what is prepared, waits for at least one completion, and runs every completion that is ready.</summary>
    public void RunOnce()
    {
        if (!_wakeArmed)
        {
            ArmWake();
        }

        // Completions set aside by a submission, and posted work (its wake-up may have been taken by a pass that
        // failed before running it), are ready work: do not sleep before running them.
        int errno;
        if (_deferred.Count > 0 || Volatile.Read(ref _postedCount) > 0)
        {
            errno = _ring.Enter(0);
        }
        else
        {
            long start = Stopwatch.GetTimestamp();
            errno = Poll(start) ? 0 : _ring.Enter(1);
            _poll.Update(Stopwatch.GetTimestamp() - start);
        }

        if (errno is not (0 or Errno.EINTR or Errno.EBUSY or Errno.EAGAIN))
        {
            ThrowOnFailure(errno, "io_uring_enter");
        }

        _inPass = true;
        try
        {
            while (_deferred.TryDequeue(out (ulong Token, int Result) deferred))
            {
                Complete(deferred.Token, deferred.Result);
            }

            while (_ring.TryReap(out ulong token, out int result))
            {
                Complete(token, result);
            }

            RunPosted();
        }
        finally
        {
            _inPass = false;

            // Outside the pass (what a listener does is not deferred again), and even after a completion threw: a
            // listener holds work (replies) that must not wait for a pass that may never come.
            for (int i = 0; i < _passEnd.Count; i++)
            {
                _passEnd[i].OnPassEnd();
            }

            _passEnd.Clear();
        }
    }

    /// <summary>
    /// Polls the ring for a completion for up to the poll budget, submitting what is prepared on the first call and
    /// letting the kernel post finished I/O at each call. True if one is there.
    /// </summary>
    private bool Poll(long start)
    {
        // Without deferred task running (Linux 6.1+) the kernel posts completions only when the thread enters it,
        // and an enter with nothing to submit or wait for returns before the kernel: the poll would see nothing.
        if (!_ring.DeferredTaskRun || !_poll.TryEnter())
        {
            return false;
        }

        try
        {
            long until = start + _poll.Ticks;
            do
            {
                if (_ring.Enter(0) != 0)
                {
                    return false;
                }

                if (_ring.HasCompletion)
                {
                    return true;
                }
            }
            while (Stopwatch.GetTimestamp() < until);

            return false;
        }
        finally
        {
            _poll.Exit();
        }
    }

    /// <summary>
    /// Runs <paramref name="item"/> on this loop's thread at its next pass; from any thread, this one included. For
    /// work that continues a request this loop started: what it does next goes through this ring, and no thread pool
    /// thread is woken for it. False once the loop is closing: the caller runs the item elsewhere.
    /// </summary>
    public bool Post(IThreadPoolWorkItem item)
    {
        bool first;
        lock (_postedLock)
        {
            if (_postClosed)
            {
                return false;
            }

            _posted.Add(item);
            first = _posted.Count == 1;
            _postedCount = _posted.Count;
        }

        if (first)
        {
            Wake();
        }

        return true;
    }

    private void RunPosted()
    {
        // Not re-entrant: a pass run from inside posted work (none does) leaves the rest to the outer one.
        if (_runningPosted || Volatile.Read(ref _postedCount) == 0)
        {
            return;
        }

        List<IThreadPoolWorkItem> run;
        lock (_postedLock)
        {
            run = _posted;
            _posted = _postedRunning;
            _postedRunning = run;
            _postedCount = 0;
        }

        _runningPosted = true;
        int i = 0;
        try
        {
            for (; i < run.Count; i++)
            {
                run[i].Execute();
            }
        }
        finally
        {
            _runningPosted = false;
            if (++i < run.Count)
            {
                // One threw (a continuation's fault is its own): the rest still run, at the next pass.
                lock (_postedLock)
                {
                    _posted.AddRange(run.GetRange(i, run.Count - i));
                    _postedCount = _posted.Count;
                }

                Wake();
            }

            run.Clear();
        }
    }

    /// <summary>
    /// Calls <paramref name="listener"/> once the current pass has run all its completions. Only on this loop's thread
    /// while <see cref="InPass"/>; the caller registers once per pass.
    /// </summary>
    public void AtPassEnd(IPassEndListener listener)
    {
        if (!_inPass || Thread.CurrentThread != _owner)
        {
            throw new InvalidOperationException("AtPassEnd is for a completion running on its loop's pass");
        }

        _passEnd.Add(listener);
    }

    private void Complete(ulong token, int result)
    {
        if (token == WakeToken)
        {
            _wakeArmed = false;
            return;
        }

        Operation operation = _operations[(int)token];
        if (operation.Background)
        {
            operation.Background = false;
            _background.Remove(operation);
        }
        else
        {
            _inFlight--;
        }

        operation.Complete(result);
    }

    /// <summary>Runs the loop until <paramref name="task"/> completes (on this thread or, after a <see cref="Wake"/>, another), then returns its result.</summary>
    public T Run<T>(ValueTask<T> task)
    {
        if (!task.IsCompleted)
        {
            // Completion by another thread must end the wait too; by this loop's own I/O it needs no wake-up.
            task.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_wakeAction);
            while (!task.IsCompleted)
            {
                RunOnce();
            }
        }

        return task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Runs the loop until <paramref name="operation"/>, one of this loop's own (from <see cref="StartAsync"/>),
    /// completes, and returns its result. Unlike <see cref="Run{T}"/> it registers no wake-up: the completion
    /// arrives through this ring (a wake-up per receive cost an eventfd write and an extra pass).
    /// </summary>
    public int Await(ValueTask<int> operation)
    {
        while (!operation.IsCompleted)
        {
            RunOnce();
        }

        return operation.GetAwaiter().GetResult();
    }

    /// <summary>Runs the loop until none of its I/O is in the kernel (before buffers it names are freed).</summary>
    public void Drain()
    {
        while (_inFlight > 0)
        {
            RunOnce();
        }
    }

    /// <summary>Ends the current or next wait early. Safe from any thread.</summary>
    public void Wake()
    {
        try
        {
            _wake.Signal();
        }
        catch (ObjectDisposedException)
        {
            // A worker's late wake-up of a loop whose thread already finished: nobody is waiting any more.
        }
    }

    /// <summary>Drains, then closes the ring. Owner thread only.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        if (Thread.CurrentThread != _owner)
        {
            throw new InvalidOperationException("an I/O loop is disposed by its own thread");
        }

        try
        {
            Drain();
        }
        finally
        {
            // Even when a drain fails, close the ring: that cancels what is left in the kernel.
            _disposed = true;
            if (s_current == this)
            {
                s_current = null;
            }

            CloseRing();

            // Work posted since the last pass, and any posted later, runs on the thread pool: no pass will come.
            List<IThreadPoolWorkItem> left;
            lock (_postedLock)
            {
                _postClosed = true;
                left = _posted;
                _posted = [];
                _postedCount = 0;
            }

            foreach (IThreadPoolWorkItem item in left)
            {
                ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: false);
            }
        }
    }

    private void CloseRing()
    {
        // Closing the ring cancels the wake-up read and background polls; their buffer and descriptors are let go only after that.
        _ring.Dispose();
        foreach (Operation operation in _background)
        {
            operation.Abandon();
        }

        _background.Clear();
        _wake.Dispose();
        ((IDisposable)_wakeValue).Dispose();
    }

    private void ArmWake()
    {
        // No drain first: a signal that came in since the last read must wake this wait, and the read resets the count.
        System.Buffers.MemoryHandle pinned = _wakeValue.Memory.Pin();
        Prepare(IoUringOp.Read, _wake.Handle.Fd, IoUring.AddressOf(pinned), sizeof(ulong), ulong.MaxValue, 0, WakeToken);

        _wakeArmed = true;
    }

    private void Prepare(IoUringOp op, int fd, ulong address, uint length, ulong offset, uint opFlags, ulong userData, ushort bufferIndex = 0)
    {
        while (!_ring.TryPrepare(op, fd, address, length, offset, opFlags, userData, bufferIndex))
        {
            // Submission ring full: hand what is there to the kernel (no wait) and try again.
            int errno = _ring.Enter(0);
            if (errno is Errno.EBUSY or Errno.EAGAIN or Errno.EINTR)
            {
                // The kernel took nothing: its completion ring is full (EBUSY), it is short of memory (EAGAIN) or a
                // signal came in. Make room by setting completions aside (they run at the next pass, never inside a
                // submission, whose caller may be mid-way through its own state), then try again.
                bool took = false;
                while (_ring.TryReap(out ulong token, out int result))
                {
                    _deferred.Enqueue((token, result));
                    took = true;
                }

                if (!took)
                {
                    Thread.Yield();
                }

                continue;
            }

            ThrowOnFailure(errno, "io_uring_enter");
        }
    }

    private Operation Rent()
    {
        if (_free.TryPop(out Operation? operation))
        {
            return operation;
        }

        int index = _created++;
        if (index == _operations.Length)
        {
            Array.Resize(ref _operations, _operations.Length * 2);
        }

        operation = new Operation(this, index);
        _operations[index] = operation;
        return operation;
    }

    private static void ThrowOnFailure(int errno, string operation)
    {
        if (errno != 0)
        {
            throw new ErrnoIOException(errno, null, operation);
        }
    }

    /// <summary>Ends a <see cref="Synchronous"/> stretch.</summary>
    public readonly struct SynchronousScope : IDisposable
    {
        public void Dispose() => s_synchronous--;
    }

    /// <summary>One request in the kernel: pins its buffer and holds its descriptor open until the completion is read.</summary>
    private sealed class Operation : IValueTaskSource<int>
    {
        private readonly IoLoop _loop;
        private ManualResetValueTaskSourceCore<int> _core;

        public Operation(IoLoop loop, int index)
        {
            _loop = loop;
            Index = index;

            // Continuations run on the loop's thread, inside RunOnce: that is the point of the engine.
            _core.RunContinuationsAsynchronously = false;
        }

        public int Index { get; }

        public SafeHandle? Fd { get; set; }

        public MemoryHandle Pin { get; set; }

        /// <summary>Not counted in the loop's in-flight I/O (a poll that may never fire).</summary>
        public bool Background { get; set; }

        public short Version => _core.Version;

        public void Complete(int result)
        {
            Unpin();
            _core.SetResult(result);
        }

        /// <summary>A background operation of a closed ring: it will never complete; give back its descriptor.</summary>
        public void Abandon() => Unpin();

        public void Release()
        {
            Unpin();
            _core.Reset();
            _loop._free.Push(this);
        }

        public int GetResult(short token)
        {
            int result = _core.GetResult(token);
            Release();
            return result;
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        private void Unpin()
        {
            Pin.Dispose();
            Pin = default;
            Fd?.DangerousRelease();
            Fd = null;
        }
    }
}
