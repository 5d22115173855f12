using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Mirror.Tests;

/// <summary>
/// A layer over a memory image that the test steers: changes fail with a chosen errno once <see cref="FailWith"/> is set,
/// or are held (asynchronously, as queued I/O) until <see cref="ReleaseHeld"/>; it records being closed.
/// </summary>
internal sealed class ScriptedImage(IBlockImage next, string path) : BlockFilter(next)
{
    private readonly Lock _lock = new();
    private readonly List<TaskCompletionSource> _held = [];
    private int _started;

    public override string DriverName => "aio";

    public override string Path => path;

    /// <summary>errno every later change fails with (0: none).</summary>
    public int FailWith { get; set; }

    public bool Hold { get; set; }

    public bool Disposed { get; private set; }

    /// <summary>Changes that reached this layer (held or not).</summary>
    public int Started => Volatile.Read(ref _started);

    public int HeldCount
    {
        get
        {
            lock (_lock)
            {
                return _held.Count;
            }
        }
    }

    public void ReleaseHeld()
    {
        List<TaskCompletionSource> held;
        lock (_lock)
        {
            held = [.. _held];
            _held.Clear();
        }

        foreach (TaskCompletionSource t in held)
        {
            t.SetResult();
        }
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        Run(() => base.WriteAsync(offsetBytes, source, flags, cancellationToken), "write");

    public override ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        Run(() => base.TrimAsync(offsetBytes, lengthBytes, cancellationToken), "trim");

    public override ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        Run(() => base.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken), "zero");

    private ValueTask Run(Func<ValueTask> change, string what)
    {
        Interlocked.Increment(ref _started);
        if (FailWith != 0)
        {
            return ValueTask.FromException(new ErrnoIOException(FailWith, path, what));
        }

        if (!Hold)
        {
            return change();
        }

        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            _held.Add(gate);
        }

        return Later(gate.Task, change);
    }

    private static async ValueTask Later(Task gate, Func<ValueTask> change)
    {
        await gate.ConfigureAwait(false);
        await change().ConfigureAwait(false);
    }

    protected override void Dispose(bool disposing)
    {
        Disposed = true;
        base.Dispose(disposing);
    }

    protected override ValueTask DisposeCoreAsync()
    {
        Disposed = true;
        return base.DisposeCoreAsync();
    }
}
