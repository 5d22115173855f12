using System.Collections.Concurrent;
using System.Diagnostics;

namespace Tapdisk.Storage;

/// <summary>
/// Dedicated threads for block requests. The drivers issue blocking pread/pwrite (O_DIRECT has no cheap async path
/// short of io_uring), and on the shared thread pool a queue depth of 32 would wait for the pool's slow thread
/// injection: on a 2-core machine it starts with 2 workers. Like qemu's AIO thread pool, this one grows at once to
/// the requests in flight, up to a bound, and lets idle threads go after a while.
/// </summary>
/// <remarks>
/// Idle workers park each on its own gate, in a LIFO: a queued item wakes exactly one worker, the most recently
/// active one, and the ones at the bottom time out and leave. A shared SemaphoreSlim did the same job, but every
/// worker going idle spun in it with sched_yield first: with 50 workers behind a 4-connection nbdcopy that was a
/// third of the server's CPU time.
/// </remarks>
public sealed class IoWorkerPool
{
    private const int NotSpinning = 0;
    private const int Spinning = 1;
    private const int Claimed = 2;

    private readonly ConcurrentQueue<IThreadPoolWorkItem> _queue = new();
    private readonly Lock _idleLock = new();
    private readonly List<Worker> _idle = new();
    private readonly string _name;
    private readonly TimeSpan _idleTimeout;
    private readonly long _spinTicks;
    private readonly int _baseMaxThreads;
    private int _threads;
    private int _idleCount;
    private int _reserved;

    // At most one worker spins before parking: NotSpinning -> Spinning (by that worker) -> Claimed (by a Queue call,
    // which then wakes nobody) -> NotSpinning (by the worker, which takes the item).
    private int _spin;

    public IoWorkerPool(int maxThreads, string name = "tapdisk-io", TimeSpan? idleTimeout = null, TimeSpan? spin = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxThreads, 1);
        _baseMaxThreads = maxThreads;
        _name = name;
        _idleTimeout = idleTimeout ?? TimeSpan.FromSeconds(10);
        TimeSpan spinTime = spin ?? DefaultSpin;
        ArgumentOutOfRangeException.ThrowIfLessThan(spinTime, TimeSpan.Zero);
        _spinTicks = (long)(spinTime.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>
    /// How long a worker that ran out of work spins before it parks, when it was the only busy one. A client at
    /// queue depth 1 sends its next request tens of microseconds after our reply; a spinning worker takes it without
    /// a futex wake on either side. With other workers still busy it parks at once: their completions bring more
    /// requests soon enough, and on a small host a spinner would take a core from them.
    /// </summary>
    public static TimeSpan DefaultSpin { get; } = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// The process-wide pool's bound: 8 threads per core, between 16 and 64 (qemu's fixed default). Blocking I/O
    /// threads beyond that mostly add context switches: on 2 cores, 16 threads served 4 KiB random reads at queue
    /// depth 32 with 1.13x the IOPS of 64 threads for 0.88x the CPU, and nbdcopy as fast (bench/RESULTS.md).
    /// </summary>
    public static int DefaultMaxThreads { get; } = Math.Clamp(Environment.ProcessorCount * 8, 16, 64);

    /// <summary>The process-wide pool, bounded by <see cref="DefaultMaxThreads"/>.</summary>
    public static IoWorkerPool Shared { get; } = new(DefaultMaxThreads);

    /// <summary>
    /// The bound on threads: the constructor's, raised to the sum of the per-VBD shares reserved (<see cref="Reserve"/>)
    /// so that VBDs whose storage hangs with their whole share in use still leave every other VBD its share.
    /// Threads start only on demand, so a high bound costs nothing while disks respond.
    /// </summary>
    public int MaxThreads => Math.Max(_baseMaxThreads, Math.Min(Volatile.Read(ref _reserved), MaxReservedThreads));

    /// <summary>The most threads reservations can raise the bound to (qemu's pool is 64 per AioContext; this covers 16 stuck VBDs at 32).</summary>
    public const int MaxReservedThreads = 512;

    /// <summary>Raises the bound by one VBD's share (<see cref="BlockBackend"/>); undone by <see cref="Unreserve"/>.</summary>
    public void Reserve(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 0);
        Interlocked.Add(ref _reserved, threads);
    }

    public void Unreserve(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 0);
        Interlocked.Add(ref _reserved, -threads);
    }

    /// <summary>Threads currently alive (for tests and stats).</summary>
    public int ThreadCount => Volatile.Read(ref _threads);

    /// <summary>Runs <paramref name="item"/> on a pool thread; never blocks and never allocates once the pool is warm.</summary>
    public void Queue(IThreadPoolWorkItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        _queue.Enqueue(item);

        // The spinning worker, if any, takes the item: the claim after the Enqueue pairs with its Exchange back to
        // NotSpinning before it drains the queue.
        if (Volatile.Read(ref _spin) == Spinning && Interlocked.CompareExchange(ref _spin, Claimed, Spinning) == Spinning)
        {
            return;
        }

        // Wake the most recently parked worker, or start one if none is parked and the bound allows; otherwise a
        // busy worker takes the item when it finishes its current one.
        if (Volatile.Read(ref _idleCount) > 0)
        {
            Worker? worker = null;
            lock (_idleLock)
            {
                int last = _idle.Count - 1;
                if (last >= 0)
                {
                    worker = _idle[last];
                    _idle.RemoveAt(last);
                    _idleCount = last;
                }
            }

            if (worker is not null)
            {
                worker.Wake();
                return;
            }
        }

        while (true)
        {
            int threads = Volatile.Read(ref _threads);
            if (threads >= MaxThreads)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref _threads, threads + 1, threads) == threads)
            {
                var thread = new Thread(static state => ((IoWorkerPool)state!).Run()) { IsBackground = true, Name = _name };
                thread.UnsafeStart(this);
                return;
            }
        }
    }

    private void Run()
    {
        var self = new Worker();
        while (true)
        {
            while (_queue.TryDequeue(out IThreadPoolWorkItem? item))
            {
                item.Execute();
            }

            if (SpinForClaim())
            {
                continue;
            }

            lock (_idleLock)
            {
                _idle.Add(self);
                _idleCount = _idle.Count;
            }

            // Re-check after parking in the list: an item queued between the last TryDequeue and the Add found no
            // parked worker and may have started none. The fence orders our _idleCount store before this load, as the
            // Enqueue orders Queue's item before its _idleCount load: one of the two sees the other.
            Interlocked.MemoryBarrier();
            if (!_queue.IsEmpty && TryLeaveIdle(self))
            {
                continue;
            }

            if (self.Park(_idleTimeout))
            {
                // The waker already took us off the list.
                continue;
            }

            if (TryLeaveIdle(self))
            {
                // Timed out while parked: leave, unless work arrived meanwhile.
                if (!_queue.IsEmpty)
                {
                    continue;
                }

                Interlocked.Decrement(ref _threads);

                // A Queue call that saw the pool full just before the decrement started no thread: take its item.
                if (_queue.IsEmpty)
                {
                    return;
                }

                if (Interlocked.Increment(ref _threads) <= MaxThreads)
                {
                    continue;
                }

                Interlocked.Decrement(ref _threads);
                return;
            }

            // A waker took us off the list between the timeout and TryLeaveIdle: its Wake is on its way; take it so
            // the gate starts clean next time.
            self.Park(Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// Spins (if no other worker is spinning and none is busy) until a Queue call claims this worker or the spin
    /// time runs out.
    /// </summary>
    private bool SpinForClaim()
    {
        if (_spinTicks == 0
            || Volatile.Read(ref _threads) - Volatile.Read(ref _idleCount) > 1
            || Interlocked.CompareExchange(ref _spin, Spinning, NotSpinning) != NotSpinning)
        {
            return false;
        }

        long deadline = Stopwatch.GetTimestamp() + _spinTicks;
        do
        {
            // A bounded pause between looks (never SpinWait.SpinOnce, which yields the core in a loop).
            Thread.SpinWait(20);
            if (Volatile.Read(ref _spin) == Claimed)
            {
                Volatile.Write(ref _spin, NotSpinning);
                return true;
            }
        }
        while (Stopwatch.GetTimestamp() < deadline);

        // Stop advertising; a claim that won the race is still ours to serve.
        return Interlocked.Exchange(ref _spin, NotSpinning) == Claimed;
    }

    /// <summary>Takes <paramref name="self"/> off the idle list if still there (false if a waker already took it).</summary>
    private bool TryLeaveIdle(Worker self)
    {
        lock (_idleLock)
        {
            int index = _idle.LastIndexOf(self);
            if (index < 0)
            {
                return false;
            }

            _idle.RemoveAt(index);
            _idleCount = _idle.Count;
            return true;
        }
    }

    /// <summary>One worker's parking gate: a flag under a monitor, so a wake is never lost and nothing spins.</summary>
    private sealed class Worker
    {
        private readonly object _gate = new();
        private bool _woken;

        public void Wake()
        {
            lock (_gate)
            {
                _woken = true;
                Monitor.Pulse(_gate);
            }
        }

        /// <summary>Waits for a Wake (true; consumed) or the timeout (false).</summary>
        public bool Park(TimeSpan timeout)
        {
            lock (_gate)
            {
                while (!_woken)
                {
                    if (!Monitor.Wait(_gate, timeout))
                    {
                        return false;
                    }
                }

                _woken = false;
                return true;
            }
        }
    }
}
