using System.Collections.Concurrent;

namespace Tapdisk.Storage;

public sealed partial class BlockBackend
{
    private readonly ConcurrentQueue<IThreadPoolWorkItem> _pending;
    private readonly Runner _runner;
    private int _share;
    private int _running;

    /// <summary>
    /// Runs <paramref name="item"/> on an I/O worker, within this VBD's share: at most that many workers run this
    /// VBD's requests at once, the rest wait in its queue. Never blocks, never allocates. The caller's thread does the
    /// enqueue only: no hop is added beyond the one to the worker (the io_uring engine will remove that one).
    /// </summary>
    public void Dispatch(IThreadPoolWorkItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        _pending.Enqueue(item);
        StartRunner();
    }

    private void StartRunner()
    {
        while (true)
        {
            int running = Volatile.Read(ref _running);
            if (running >= Volatile.Read(ref _share))
            {
                // A running worker takes the item when it finishes its current one.
                return;
            }

            if (Interlocked.CompareExchange(ref _running, running + 1, running) == running)
            {
                _options.IoWorkers.Queue(_runner);
                return;
            }
        }
    }

    /// <summary>One of this VBD's share of workers: takes its requests until none is left.</summary>
    private sealed class Runner : IThreadPoolWorkItem
    {
        private readonly BlockBackend _backend;

        public Runner(BlockBackend backend)
        {
            _backend = backend;
        }

        public void Execute()
        {
            BlockBackend backend = _backend;
            try
            {
                while (backend._pending.TryDequeue(out IThreadPoolWorkItem? item))
                {
                    try
                    {
                        item.Execute();
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        // A frontend's bug fails its own request, never the worker (and with it the process).
                        Log.DispatchFailed(backend._logger, backend.Name, e);
                    }
                }
            }
            finally
            {
                // Full fence: an item enqueued after our last look either saw this runner counted (and left the item
                // to it) or sees the decrement and starts another; the re-check covers the first case.
                Interlocked.Decrement(ref backend._running);
                if (!backend._pending.IsEmpty)
                {
                    backend.StartRunner();
                }
            }
        }
    }
}
