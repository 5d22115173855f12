namespace Tapdisk.Storage;

/// <summary>
/// One opened disk image (with its parents behind it): the contract the NBD server and the blkif ring use.
/// Callers validate ranges (see <see cref="BlockRequestValidator"/>); many requests may be in flight at once.
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

    /// <summary>The next image down the chain, or null at the bottom.</summary>
    IBlockImage? Parent { get; }

    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default);

    ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default);

    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Discards a range; afterwards it reads as zeros or as the parent's data (like a VHD bit clear).</summary>
    ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default);

    /// <summary>Makes a range read as zeros.</summary>
    ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default);

    /// <summary>Appends the allocation map of a range to <paramref name="extents"/> (NBD base:allocation semantics).</summary>
    ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default);
}
