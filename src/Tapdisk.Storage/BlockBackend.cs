using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Tapdisk.Abi;
using Microsoft.Extensions.Logging.Abstractions;

namespace Tapdisk.Storage;

/// <summary>
/// One VBD's block stack as both frontends (NBD connections, blkif rings) and the tools see it: the request gate
/// (pause drains, resume swaps the stack: qemu's drain begin/end), the one in-flight count, validation once, the
/// statistics (kept across pause and resume), and dispatch to the I/O workers within a per-VBD share. Frontends
/// call <see cref="TryEnter"/> or <see cref="EnterAsync"/> when a request arrives, run it with the operations here
/// (from any thread, usually an I/O worker reached through <see cref="Dispatch"/>), and <see cref="Exit"/> when
/// it is answered.
/// </summary>
public sealed partial class BlockBackend : IDisposable
{
    // The gate word: the paused flag and the count of requests inside, changed together by one CAS so a request can
    // never slip in after a pause saw the count reach zero.
    private const int PausedBit = 1 << 30;
    private const int CountMask = PausedBit - 1;

    private readonly Lock _lock = new();
    private readonly BlockBackendOptions _options;
    private readonly ILogger _logger;
    private readonly LogRateLimiter _logLimit = new();
    private readonly List<Action> _resumeListeners = [];
    private int _gate;
    private IBlockImage _image;
    private BlockSizeFilter _top;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource? _resumed;
    private bool _disposed;

    private TdStatsPage? _statsPage;
    private long _readSectors;
    private long _writeSectors;
    private long _readFailedSectors;
    private long _writeFailedSectors;

    public BlockBackend(IBlockImage image, BlockBackendOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        _options = options ?? new BlockBackendOptions();
        _options.Validate();
        _logger = _options.Logger ?? NullLogger.Instance;
        _image = image;
        _top = new BlockSizeFilter(image);
        _pending = new ConcurrentQueue<IThreadPoolWorkItem>();
        _runner = new Runner(this);
        _share = ShareFor(image);
        _options.IoWorkers.Reserve(_options.WorkerShare);
    }

    public string Name => _options.Name;

    /// <summary>The VBD's stack as opened (formats and blktap's filters), for stats and capabilities; swapped by <see cref="Resume"/>.</summary>
    public IBlockImage Image => Volatile.Read(ref _image);

    public bool IsReadOnly => Image.IsReadOnly;

    public ImageCapabilities Capabilities => Image.Capabilities;

    /// <summary>
    /// Whether a frontend may run a request on its own thread instead of dispatching it: when no layer of the stack
    /// would block the calling thread for it (<see cref="IBlockImage.MayBlock"/>; a hop would cost more than the
    /// work), or when <paramref name="alone"/> (nothing else of this VBD's frontend is waiting). Never for a stack that
    /// serializes requests, whose one-at-a-time rule only the dispatcher keeps.
    /// </summary>
    public bool MayRunInline(BlockOperation operation, long offsetBytes, long lengthBytes, bool alone) =>
        Volatile.Read(ref _share) > 1 && (alone || !Volatile.Read(ref _top).MayBlock(operation, offsetBytes, lengthBytes));

    /// <summary>Requests inside the gate now (tapdisk's reqs_outstanding): entered and not yet answered.</summary>
    public int InFlight => Volatile.Read(ref _gate) & CountMask;

    public bool IsPaused => (Volatile.Read(ref _gate) & PausedBit) != 0;

    /// <summary>Sectors read and written since OPEN (blktap's secs); failed requests are not counted here.</summary>
    public long ReadSectors => Volatile.Read(ref _readSectors);

    public long WriteSectors => Volatile.Read(ref _writeSectors);

    public long ReadFailedSectors => Volatile.Read(ref _readFailedSectors);

    public long WriteFailedSectors => Volatile.Read(ref _writeFailedSectors);

    /// <summary>
    /// The VDI's published statistics page (/dev/shm/td3-&lt;pid&gt;/vdi-&lt;minor&gt;), counted as requests are taken in and
    /// answered; null while not published (paused, closed). Swapped by the owner between requests, never torn down under one.
    /// </summary>
    public TdStatsPage? StatsPage
    {
        get => Volatile.Read(ref _statsPage);
        set => Volatile.Write(ref _statsPage, value);
    }

    /// <summary>Checks a request once, before it runs (<see cref="BlockRequestValidator"/>): 0 or the errno to answer.</summary>
    public int Validate(BlockOperation operation, long offsetBytes, long lengthBytes) =>
        BlockRequestValidator.Validate(Image, operation, offsetBytes, lengthBytes);

    /// <summary>Enters the gate unless paused; every true is paired with one <see cref="Exit"/>.</summary>
    public bool TryEnter()
    {
        int state = Volatile.Read(ref _gate);
        while ((state & PausedBit) == 0)
        {
            int seen = Interlocked.CompareExchange(ref _gate, state + 1, state);
            if (seen == state)
            {
                return true;
            }

            state = seen;
        }

        return false;
    }

    /// <summary>Enters the gate, waiting while the backend is paused; completes synchronously when it is not.</summary>
    public ValueTask EnterAsync(CancellationToken cancellationToken = default) =>
        TryEnter() ? ValueTask.CompletedTask : EnterSlowAsync(cancellationToken);

    /// <summary>Leaves the gate; the last request out of a paused backend completes its drain.</summary>
    public void Exit()
    {
        // Full fence: pairs with the one in PauseAsync's Or, which published _drained before the paused bit.
        if (Interlocked.Decrement(ref _gate) == PausedBit)
        {
            CompleteDrain();
        }
    }

    /// <summary>
    /// Rare path: looked at again under the lock, so an Exit delayed across a resume and a new pause cannot complete
    /// that newer pause's drain while its requests are still inside.
    /// </summary>
    private void CompleteDrain()
    {
        lock (_lock)
        {
            if (Volatile.Read(ref _gate) == PausedBit)
            {
                _drained?.TrySetResult();
            }
        }
    }

    /// <summary>Stops new requests entering and completes when those inside have left (pausing twice is fine).</summary>
    public Task PauseAsync(CancellationToken cancellationToken = default)
    {
        Task drained;
        lock (_lock)
        {
            // The paused bit changes only under this lock.
            if ((_gate & PausedBit) == 0)
            {
                _resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref _drained, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                Interlocked.Or(ref _gate, PausedBit);
            }

            if ((Volatile.Read(ref _gate) & CountMask) == 0)
            {
                _drained!.TrySetResult();
            }

            drained = _drained!.Task;
        }

        return drained.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Lets requests in again, to <paramref name="newImage"/> if given (the stack reopened after a snapshot); the
    /// caller disposed the old stack. Frontends keep their connections and rings; listeners are told to look again.
    /// </summary>
    public void Resume(IBlockImage? newImage = null)
    {
        TaskCompletionSource? resumed;
        Action[] listeners;
        lock (_lock)
        {
            bool paused = (_gate & PausedBit) != 0;
            if (newImage is not null)
            {
                if (!paused)
                {
                    throw new InvalidOperationException("the stack can only be replaced while the backend is paused");
                }

                Volatile.Write(ref _top, new BlockSizeFilter(newImage));
                Volatile.Write(ref _image, newImage);
                Volatile.Write(ref _share, ShareFor(newImage));
            }

            if (!paused)
            {
                return;
            }

            Interlocked.And(ref _gate, ~PausedBit);
            resumed = _resumed;
            _resumed = null;
            _drained = null;
            listeners = [.. _resumeListeners];
        }

        resumed?.TrySetResult();
        foreach (Action listener in listeners)
        {
            try
            {
                listener();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One frontend's failure (a ring being released) must not keep the others asleep.
                Log.ResumeListenerFailed(_logger, Name, e);
            }
        }
    }

    /// <summary>Calls <paramref name="listener"/> after each resume (a blkif ring wakes its thread to pull requests again).</summary>
    public void AddResumeListener(Action listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        lock (_lock)
        {
            _resumeListeners.Add(listener);
        }
    }

    public void RemoveResumeListener(Action listener)
    {
        lock (_lock)
        {
            _resumeListeners.Remove(listener);
        }
    }

    /// <summary>Closes the current stack (pause or close, after the drain): its files are flushed and released.</summary>
    public ValueTask CloseImageAsync() => Volatile.Read(ref _top).DisposeAsync();

    /// <summary>Returns the worker share to the pool. The stack is closed by <see cref="CloseImageAsync"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _options.IoWorkers.Unreserve(_options.WorkerShare);
    }

    private async ValueTask EnterSlowAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task resumed;
            lock (_lock)
            {
                if (TryEnter())
                {
                    return;
                }

                // Paused (the bit and _resumed change together under the lock).
                resumed = _resumed!.Task;
            }

            await resumed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private int ShareFor(IBlockImage stack)
    {
        for (IBlockImage? layer = stack; layer is not null; layer = layer.Parent)
        {
            if (layer.ThreadModel == LayerThreadModel.SerializeRequests)
            {
                return 1;
            }
        }

        return _options.WorkerShare;
    }
}
