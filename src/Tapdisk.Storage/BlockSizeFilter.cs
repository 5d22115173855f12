using System.Runtime.CompilerServices;

namespace Tapdisk.Storage;

/// <summary>
/// Lets any frontend send what the layers below cannot take as is (nbdkit's blocksize filter): reads and writes
/// not aligned to the next layer's minimum block go through a bounce buffer (read-modify-write for writes), FUA is
/// emulated with a flush where the layer has none, trims shrink to the whole blocks inside them (a trim is
/// advisory), zeroing does its partial head and tail blocks by read-modify-write, and extent queries widen to whole
/// blocks. Aligned requests pass straight through, allocation-free. <see cref="BlockBackend"/> puts it on top of
/// every stack; it is an adaptor, not one of blktap's layers, so the stats walk starts below it.
/// </summary>
public sealed class BlockSizeFilter : BlockFilter
{
    // Serializes read-modify-write cycles: two unaligned writes sharing a block must not lose each other's bytes. An
    // aligned write covers whole blocks, so it overlaps any such write anyway (the same rule as nbdkit's filter).
    private readonly SemaphoreSlim _rmwLock = new(1, 1);

    public BlockSizeFilter(IBlockImage next)
        : base(next)
    {
    }

    public override string DriverName => "blocksize";

    private int Block => Math.Max(1, Next.Limits.MinimumBlockBytes);

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        int block = Block;
        if (offsetBytes % block == 0 && destination.Length % block == 0)
        {
            return Next.ReadAsync(offsetBytes, destination, cancellationToken);
        }

        return ReadUnalignedAsync(offsetBytes, destination, block, cancellationToken);
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        int block = Block;
        bool emulateFua = (flags & WriteFlags.Fua) != 0 && (Next.Capabilities & ImageCapabilities.Fua) == 0;
        if (offsetBytes % block == 0 && source.Length % block == 0 && !emulateFua)
        {
            return Next.WriteAsync(offsetBytes, source, flags, cancellationToken);
        }

        return WriteSlowAsync(offsetBytes, source, flags, block, emulateFua, cancellationToken);
    }

    public override ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        int block = Block;
        long start = RoundUp(offsetBytes, block);
        long end = RoundDown(offsetBytes + lengthBytes, block);
        return end > start ? Next.TrimAsync(start, end - start, cancellationToken) : ValueTask.CompletedTask;
    }

    public override ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        int block = Block;
        bool emulateFua = (flags & ZeroFlags.Fua) != 0 && (Next.Capabilities & ImageCapabilities.Fua) == 0;
        if (offsetBytes % block == 0 && lengthBytes % block == 0 && !emulateFua)
        {
            return Next.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);
        }

        return ZeroSlowAsync(offsetBytes, lengthBytes, flags, block, emulateFua, cancellationToken);
    }

    public override ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        int block = Block;
        long start = RoundDown(offsetBytes, block);
        long end = Math.Min(RoundUp(offsetBytes + lengthBytes, block), Next.SizeBytes);
        return Next.GetExtentsAsync(start, end - start, extents, cancellationToken);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _rmwLock.Dispose();
        }

        base.Dispose(disposing);
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _rmwLock.Dispose();
        return base.DisposeCoreAsync();
    }

    private static long RoundDown(long value, int block) => value - (value % block);

    private static long RoundUp(long value, int block) => RoundDown(value + block - 1, block);

    /// <summary>Widens a read to whole blocks through a bounce buffer.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadUnalignedAsync(long offsetBytes, Memory<byte> destination, int block, CancellationToken cancellationToken)
    {
        long start = RoundDown(offsetBytes, block);
        long end = Math.Min(RoundUp(offsetBytes + destination.Length, block), Next.SizeBytes);
        Abi.AlignedMemory bounce = AlignedBufferPool.Shared.Rent((int)(end - start));
        try
        {
            Memory<byte> wide = bounce.Memory[..(int)(end - start)];
            await Next.ReadAsync(start, wide, cancellationToken).ConfigureAwait(false);
            wide.Slice((int)(offsetBytes - start), destination.Length).CopyTo(destination);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteSlowAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags, int block, bool emulateFua, CancellationToken cancellationToken)
    {
        WriteFlags passed = emulateFua ? flags & ~WriteFlags.Fua : flags;
        if (offsetBytes % block == 0 && source.Length % block == 0)
        {
            await Next.WriteAsync(offsetBytes, source, passed, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await ReadModifyWriteAsync(offsetBytes, source.Length, source, passed, block, cancellationToken).ConfigureAwait(false);
        }

        if (emulateFua)
        {
            await FlushIfAbleAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ZeroSlowAsync(long offsetBytes, long lengthBytes, ZeroFlags flags, int block, bool emulateFua, CancellationToken cancellationToken)
    {
        ZeroFlags passed = emulateFua ? flags & ~ZeroFlags.Fua : flags;
        WriteFlags writeFlags = (passed & ZeroFlags.Fua) != 0 ? WriteFlags.Fua : WriteFlags.None;
        long end = offsetBytes + lengthBytes;
        long middleStart = RoundUp(offsetBytes, block);
        long middleEnd = RoundDown(end, block);
        if (middleStart >= middleEnd)
        {
            // Entirely inside one or two partial blocks.
            await ReadModifyWriteAsync(offsetBytes, lengthBytes, null, writeFlags, block, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            if (offsetBytes < middleStart)
            {
                await ReadModifyWriteAsync(offsetBytes, middleStart - offsetBytes, null, writeFlags, block, cancellationToken).ConfigureAwait(false);
            }

            await Next.ZeroAsync(middleStart, middleEnd - middleStart, passed, cancellationToken).ConfigureAwait(false);
            if (middleEnd < end)
            {
                await ReadModifyWriteAsync(middleEnd, end - middleEnd, null, writeFlags, block, cancellationToken).ConfigureAwait(false);
            }
        }

        if (emulateFua)
        {
            await FlushIfAbleAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private ValueTask FlushIfAbleAsync(CancellationToken cancellationToken) =>
        (Next.Capabilities & ImageCapabilities.Flush) != 0 ? Next.FlushAsync(cancellationToken) : ValueTask.CompletedTask;

    /// <summary>
    /// Writes <paramref name="source"/> (or zeros when null) at an unaligned range: reads the partial head and tail
    /// blocks, merges, writes whole blocks.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadModifyWriteAsync(long offsetBytes, long lengthBytes, ReadOnlyMemory<byte>? source, WriteFlags flags, int block, CancellationToken cancellationToken)
    {
        long end = offsetBytes + lengthBytes;
        long start = RoundDown(offsetBytes, block);
        long wideEnd = Math.Min(RoundUp(end, block), Next.SizeBytes);
        int wideLength = (int)(wideEnd - start);
        await _rmwLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        Abi.AlignedMemory bounce = AlignedBufferPool.Shared.Rent(wideLength);
        try
        {
            Memory<byte> wide = bounce.Memory[..wideLength];
            long headEnd = Math.Min(start + block, wideEnd);
            if (offsetBytes > start)
            {
                await Next.ReadAsync(start, wide[..(int)(headEnd - start)], cancellationToken).ConfigureAwait(false);
            }

            long tailStart = Math.Max(start, RoundDown(end, block));
            if (end < wideEnd && (tailStart >= headEnd || offsetBytes == start))
            {
                await Next.ReadAsync(tailStart, wide[(int)(tailStart - start)..], cancellationToken).ConfigureAwait(false);
            }

            Memory<byte> target = wide.Slice((int)(offsetBytes - start), (int)lengthBytes);
            if (source is { } data)
            {
                data.CopyTo(target);
            }
            else
            {
                target.Span.Clear();
            }

            await Next.WriteAsync(start, wide, flags, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
            _rmwLock.Release();
        }
    }
}
