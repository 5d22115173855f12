using Tapdisk.Storage;

namespace Tapdisk.Testing;

/// <summary>
/// A filter that holds reads and writes the way hung storage does: the calling I/O worker blocks inside the call (as in
/// a pread that never returns) until <see cref="Release"/>. <see cref="Entered"/> counts calls that reached it, so a
/// test waits on observable state, never on time.
/// </summary>
public sealed class GateFilter : BlockFilter
{
    private readonly ManualResetEventSlim _open = new(initialState: false);
    private readonly object _lock = new();
    private int _entered;

    public GateFilter(IBlockImage next)
        : base(next)
    {
    }

    public override string DriverName => "test-gate";

    /// <summary>It holds its caller, as hung storage holds a pread.</summary>
    public override bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => true;

    /// <summary>Reads and writes that have reached the gate (held or passed).</summary>
    public int Entered => Volatile.Read(ref _entered);

    /// <summary>Opens the gate: held calls go on, later ones pass straight through.</summary>
    public void Release() => _open.Set();

    /// <summary>Blocks until at least <paramref name="count"/> calls have reached the gate (or the hang guard fires).</summary>
    public void WaitForEntered(int count, TimeSpan? timeout = null)
    {
        lock (_lock)
        {
            DateTime deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
            while (_entered < count)
            {
                TimeSpan left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_lock, left))
                {
                    throw new TimeoutException($"{_entered} of {count} calls reached the gate");
                }
            }
        }
    }

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Hold();
        return base.ReadAsync(offsetBytes, destination, cancellationToken);
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        Hold();
        return base.WriteAsync(offsetBytes, source, flags, cancellationToken);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _open.Set();
            _open.Dispose();
        }

        base.Dispose(disposing);
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _open.Set();
        return base.DisposeCoreAsync();
    }

    private void Hold()
    {
        lock (_lock)
        {
            _entered++;
            Monitor.PulseAll(_lock);
        }

        _open.Wait();
    }
}
