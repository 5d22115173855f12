using Tapdisk.Storage;

namespace Tapdisk.Nbd;

/// <summary>
/// One named export. It owns the pause gate: requests enter before touching the image and leave when the image
/// is done with them, so <see cref="PauseAsync"/> can drain and <see cref="Resume"/> can swap the image.
/// </summary>
public sealed class NbdExport
{
    private readonly Lock _lock = new();
    private IBlockImage _image;
    private int _inFlight;
    private bool _paused;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource? _resumed;

    public NbdExport(string name, string description, IBlockImage image)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(image);
        Name = name;
        Description = description;
        _image = image;
    }

    public string Name { get; }

    public string Description { get; }

    /// <summary>The image requests currently go to.</summary>
    public IBlockImage Image
    {
        get
        {
            lock (_lock)
            {
                return _image;
            }
        }
    }

    public bool IsPaused
    {
        get
        {
            lock (_lock)
            {
                return _paused;
            }
        }
    }

    /// <summary>Serializes read-modify-write cycles for requests not aligned to the image's minimum block.</summary>
    internal SemaphoreSlim UnalignedWriteLock { get; } = new(1, 1);

    /// <summary>Stops new requests from reaching the image and completes when those in flight have finished.</summary>
    public Task PauseAsync(CancellationToken cancellationToken = default)
    {
        Task drained;
        lock (_lock)
        {
            if (!_paused)
            {
                _paused = true;
                _resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            if (_inFlight == 0)
            {
                return Task.CompletedTask;
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            drained = _drained.Task;
        }

        return drained.WaitAsync(cancellationToken);
    }

    /// <summary>Lets requests flow again, optionally to a new image (e.g. after a snapshot); clients stay connected.</summary>
    public void Resume(IBlockImage? newImage = null)
    {
        TaskCompletionSource? resumed;
        lock (_lock)
        {
            if (newImage is not null)
            {
                _image = newImage;
            }

            if (!_paused)
            {
                return;
            }

            _paused = false;
            resumed = _resumed;
            _resumed = null;
            _drained = null;
        }

        resumed?.TrySetResult();
    }

    /// <summary>Enters the gate; completes synchronously unless the export is paused.</summary>
    internal ValueTask<IBlockImage> BeginRequestAsync(CancellationToken cancellationToken)
    {
        Task resumed;
        lock (_lock)
        {
            if (!_paused)
            {
                _inFlight++;
                return new ValueTask<IBlockImage>(_image);
            }

            resumed = _resumed!.Task;
        }

        return WaitThenBeginAsync(resumed, cancellationToken);
    }

    internal void EndRequest()
    {
        TaskCompletionSource? drained = null;
        lock (_lock)
        {
            _inFlight--;
            if (_inFlight == 0 && _paused)
            {
                drained = _drained;
            }
        }

        drained?.TrySetResult();
    }

    private async ValueTask<IBlockImage> WaitThenBeginAsync(Task resumed, CancellationToken cancellationToken)
    {
        while (true)
        {
            await resumed.WaitAsync(cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                if (!_paused)
                {
                    _inFlight++;
                    return _image;
                }

                resumed = _resumed!.Task;
            }
        }
    }
}
