namespace Tapdisk.Storage;

/// <summary>
/// The filter contract (nbdkit's filters, qemu's filter nodes): a filter wraps the next layer of the stack and
/// overrides only what it changes; everything else passes through. It owns <see cref="Next"/>: disposing the filter
/// disposes the stack below it. Requests reach it already validated by <see cref="BlockBackend"/>.
/// </summary>
public abstract class BlockFilter : IBlockImage
{
    protected BlockFilter(IBlockImage next)
    {
        ArgumentNullException.ThrowIfNull(next);
        Next = next;
    }

    /// <summary>The layer this filter forwards to.</summary>
    public IBlockImage Next { get; }

    /// <summary>The filter's name in the driver table, as blktap spells its filter types ("log", "lc").</summary>
    public abstract string DriverName { get; }

    public virtual string Path => Next.Path;

    public virtual long SizeBytes => Next.SizeBytes;

    public virtual bool IsReadOnly => Next.IsReadOnly;

    public virtual ImageCapabilities Capabilities => Next.Capabilities;

    public virtual IoLimits Limits => Next.Limits;

    public IBlockImage? Parent => Next;

    public LayerKind Kind => LayerKind.Filter;

    public virtual LayerThreadModel ThreadModel => Next.ThreadModel;

    public virtual bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => Next.MayBlock(operation, offsetBytes, lengthBytes);

    public virtual ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        Next.ReadAsync(offsetBytes, destination, cancellationToken);

    public virtual ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        Next.WriteAsync(offsetBytes, source, flags, cancellationToken);

    public virtual ValueTask FlushAsync(CancellationToken cancellationToken = default) => Next.FlushAsync(cancellationToken);

    public virtual ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        Next.TrimAsync(offsetBytes, lengthBytes, cancellationToken);

    public virtual ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        Next.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);

    public virtual ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default) =>
        Next.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);

    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    public async ValueTask DisposeAsync()
    {
        await DisposeCoreAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the filter's own state, then the stack below.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            Next.Dispose();
        }
    }

    /// <summary>Releases the filter's own state (flushing what it must), then the stack below.</summary>
    protected virtual ValueTask DisposeCoreAsync() => Next.DisposeAsync();
}
