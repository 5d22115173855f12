using System.Collections.Concurrent;
using System.Diagnostics;

namespace Tapdisk.Storage;

/// <summary>
/// Dedicated threads for block requests. The drivers issue blocking pread/pwrite (O_DIRECT has no cheap async path
/// short of io_uring), and on the shared thread pool a queue depth of 32 would wait for the pool's slow thread
/// injection: on a 2-core machine it starts with 2 workers. Like qemu's AIO thread pool, this one grows at once to
/// the requests in flight, up to a bound, and lets idle threads go after a while.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The semaphore holds no OS handle unless AvailableWaitHandle is used (never here); idle workers wait on it for the pool's whole life.")]
public sealed class IoWorkerPool
{
    private const int NotSpinning = 0;
    private const int Spinning = 1;
    private const int Claimed = 2;

    private readonly ConcurrentQueue<IThreadPoolWorkItem> _queue = new();
    private readonly SemaphoreSlim _ready = new(0);
    private readonly string _name;
    private readonly TimeSpan _idleTimeout;
    private readonly long _spinTicks;
    private int _threads;
    private int _idle;

    // At most one worker spins before parking: NotSpinning -> Spinning (by that worker) -> Claimed (by a Queue call,
    // which then wakes nobody) -> NotSpinning (by the worker, which takes the item).
    private int _spin;

    public IoWorkerPool(int maxThreads, string name = "tapdisk-io", TimeSpan? idleTimeout = null, TimeSpan? spin = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxThreads, 1);
        MaxThreads = maxThreads;
        _name = name;
        _idleTimeout = idleTimeout ?? TimeSpan.FromSeconds(10);
        TimeSpan spinTime = spin ?? DefaultSpin;
        ArgumentOutOfRangeException.ThrowIfLessThan(spinTime, TimeSpan.Zero);
        _spinTicks = (long)(spinTime.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>
    /// How long a worker that ran out of work spins before it parks. A client at queue depth 1 sends its next request
    /// tens of microseconds after our reply; a spinning worker takes it without a futex wake on either side.
    /// </summary>
    public static TimeSpan DefaultSpin { get; } = TimeSpan.FromMicroseconds(50);

    /// <summary>The process-wide pool (64 threads at most, as qemu's default).</summary>
    public static IoWorkerPool Shared { get; } = new(64);

    public int MaxThreads { get; }

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

        // Claim an idle thread, or start one if none is idle and the bound allows; otherwise a busy thread takes the
        // item when it finishes its current one.
        while (true)
        {
            int idle = Volatile.Read(ref _idle);
            if (idle > 0)
            {
                if (Interlocked.CompareExchange(ref _idle, idle - 1, idle) == idle)
                {
                    _ready.Release();
                    return;
                }

                continue;
            }

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

            Interlocked.Increment(ref _idle);

            // Re-check after advertising idleness: an item queued between the last TryDequeue and the increment
            // found no idle thread and may have started none.
            if (!_queue.IsEmpty && TryUnidle())
            {
                continue;
            }

            if (_ready.Wait(_idleTimeout))
            {
                // The releaser already took us off the idle count.
                continue;
            }

            if (TryUnidle())
            {
                // Timed out while idle: leave, unless work arrived meanwhile.
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

            // A releaser claimed us between the timeout and TryUnidle: consume its release so counts stay paired.
            _ready.Wait();
        }
    }

    /// <summary>Spins (if no other worker is) until a Queue call claims this worker or the spin time runs out.</summary>
    private bool SpinForClaim()
    {
        if (_spinTicks == 0 || Interlocked.CompareExchange(ref _spin, Spinning, NotSpinning) != NotSpinning)
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

    /// <summary>Leaves the idle count if still on it (false if a releaser already claimed this thread).</summary>
    private bool TryUnidle()
    {
        while (true)
        {
            int idle = Volatile.Read(ref _idle);
            if (idle == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _idle, idle - 1, idle) == idle)
            {
                return true;
            }
        }
    }
}
