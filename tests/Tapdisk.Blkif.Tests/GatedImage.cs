using Tapdisk.Storage;

namespace Tapdisk.Blkif.Tests;

/// <summary>Wraps an image to hold one request at a given offset until released, fail reads at an offset, or complete asynchronously.</summary>
internal sealed class GatedImage : IBlockImage
{
    private readonly IBlockImage _inner;
    private readonly HashSet<long> _seen = [];
    private readonly Lock _lock = new();
    private TaskCompletionSource? _gate;
    private long _heldOffset = -1;
    private int _calls;

    public GatedImage(IBlockImage inner)
    {
        _inner = inner;
    }

    public long FailReadsAt { get; init; } = -1;

    /// <summary>Every Nth I/O completes on the thread pool instead of inline.</summary>
    public int CompleteAsynchronouslyEvery { get; init; }

    public string DriverName => _inner.DriverName;

    public string Path => _inner.Path;

    public long SizeBytes => _inner.SizeBytes;

    public bool IsReadOnly => _inner.IsReadOnly;

    public ImageCapabilities Capabilities => _inner.Capabilities;

    public IoLimits Limits => _inner.Limits;

    public IBlockImage? Parent => _inner.Parent;

    public void Hold(long sectorOffsetBytes)
    {
        _heldOffset = sectorOffsetBytes;
        _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public void Release() => _gate?.TrySetResult();

    public bool SawOffset(long offsetBytes)
    {
        lock (_lock)
        {
            return _seen.Contains(offsetBytes);
        }
    }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (offsetBytes == FailReadsAt)
        {
            return ValueTask.FromException(new IOException("injected read failure"));
        }

        return Run(offsetBytes, () => _inner.ReadAsync(offsetBytes, destination, cancellationToken));
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        Run(offsetBytes, () => _inner.WriteAsync(offsetBytes, source, flags, cancellationToken));

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _inner.FlushAsync(cancellationToken);

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) => _inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken);

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) => _inner.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);

    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default) => _inner.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);

    public void Dispose() => _inner.Dispose();

    public ValueTask DisposeAsync() => _inner.DisposeAsync();

    private ValueTask Run(long offsetBytes, Func<ValueTask> io)
    {
        lock (_lock)
        {
            _seen.Add(offsetBytes);
        }

        TaskCompletionSource? gate = _gate;
        if (gate is not null && offsetBytes == _heldOffset)
        {
            _heldOffset = -1;
            return new ValueTask(gate.Task.ContinueWith(_ => io().AsTask(), TaskScheduler.Default).Unwrap());
        }

        if (CompleteAsynchronouslyEvery > 0 && Interlocked.Increment(ref _calls) % CompleteAsynchronouslyEvery == 0)
        {
            return new ValueTask(Task.Run(async () => await io()));
        }

        return io();
    }
}
