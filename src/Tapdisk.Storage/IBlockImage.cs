namespace Tapdisk.Storage;

/// <summary>
/// One layer of a VBD's stack (a format with its parents behind it, or a filter over the next layer): the contract
/// <see cref="BlockBackend"/> drives for both frontends. Callers validate ranges, read-only and capabilities first
/// (<see cref="BlockRequestValidator"/>, nbdkit's backend.c rule); many requests may be in flight at once.
/// </summary>
public interface IBlockImage : IAsyncDisposable, IDisposable
{
    /// <summary>The driver name as blktap spells it ("aio", "vhd").</summary>
    string DriverName { get; }

    string Path { get; }

    long SizeBytes { get; }

    bool IsReadOnly { get; }

    ImageCapabilities Capabilities { get; }

    IoLimits Limits { get; }

    /// <summary>The next layer down: a format's backing image, a filter's next layer; null at the bottom.</summary>
    IBlockImage? Parent { get; }

    /// <summary>A format (keeps its backing chain) or a filter (wraps <see cref="Parent"/>, blktap's DISK_TYPE_FILTER).</summary>
    LayerKind Kind => LayerKind.Image;

    /// <summary>Whether requests may run on this layer concurrently; the backend honours the strictest in the stack.</summary>
    LayerThreadModel ThreadModel => LayerThreadModel.Parallel;

    /// <summary>
    /// Whether this request, called from the current thread, may hold that thread while the storage works (a blocking
    /// pread, a metadata read or an allocation). Frontends then hand it to the I/O workers; a request that cannot block
    /// (memory, or I/O that completes through the thread's io_uring loop) runs inline on the frontend's thread, with no
    /// hop. A guess made before the call: a false that turns out wrong costs a short block of the caller, never a fault.
    /// </summary>
    bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => true;

    /// <summary>Reads this layer served from its own data (not passed to a parent); null for filters.</summary>
    LayerCounters? Counters => null;

    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default);

    ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default);

    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Discards a range; afterwards it reads as zeros or as the parent's data (like a VHD bit clear).</summary>
    ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default);

    /// <summary>Makes a range read as zeros.</summary>
    ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default);

    /// <summary>Appends the allocation map of a range to <paramref name="extents"/> (NBD base:allocation semantics).</summary>
    ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends what this layer itself holds over a range, its parents aside: Data where the layer has the sectors,
    /// Hole where a read falls through to the parent (or reads as zeros with none). For qemu:allocation-depth; a
    /// layer without a parent holds everything.
    /// </summary>
    ValueTask GetOwnAllocationAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
        return ValueTask.CompletedTask;
    }
}
