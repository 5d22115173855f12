using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;
using static Tapdisk.Nbd.NbdProtocol;

namespace Tapdisk.Nbd;

/// <summary>Executes one request against the image on an I/O worker (drivers complete synchronously), then writes its reply.</summary>
internal sealed partial class NbdConnection
{
    public void Execute(NbdRequest request)
    {
        ValueTask pending = RunRequestAsync(request);
        if (!pending.IsCompleted)
        {
            // RunRequestAsync never faults; the continuation queues the reply itself.
            _ = pending.AsTask();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunRequestAsync(NbdRequest request)
    {
        IBlockImage image = request.Image!;
        Exception? failure = null;
        try
        {
            request.Error = await ExecuteAsync(request, image).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Driver errors fail this request only (STYLE.md section 6).
            failure = e;
            request.Error = NbdErrors.FromException(e);
        }
        finally
        {
            _export!.EndRequest();
        }

        if (request.Error != 0)
        {
            Log.RequestFailed(_logger, _id, request.Command, request.OffsetBytes, request.LengthBytes, request.Error, failure);
        }

        QueueReply(request);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<uint> ExecuteAsync(NbdRequest request, IBlockImage image)
    {
        long offset = request.OffsetBytes > long.MaxValue ? -1 : (long)request.OffsetBytes;
        long length = request.LengthBytes;
        ImageCapabilities caps = image.Capabilities;
        bool fua = (request.Flags & NBD_CMD_FLAG_FUA) != 0;
        int error;
        switch (request.Command)
        {
            case NBD_CMD_READ:
                if ((error = BlockRequestValidator.Validate(image, offset, length, isWrite: false)) != 0)
                {
                    return NbdErrors.FromErrno(error);
                }

                if (length != 0)
                {
                    if (_structuredReplies && length >= _options.SparseReadMinBytes && (caps & ImageCapabilities.Extents) != 0)
                    {
                        await ReadSparseAsync(image, offset, request).ConfigureAwait(false);
                    }
                    else
                    {
                        await ReadAsync(image, offset, request.Data).ConfigureAwait(false);
                    }
                }

                return 0;

            case NBD_CMD_WRITE:
                if ((error = ValidateWrite(image, offset, length, ImageCapabilities.Write)) != 0)
                {
                    return NbdErrors.FromErrno(error);
                }

                if (length != 0)
                {
                    WriteFlags flags = fua && (caps & ImageCapabilities.Fua) != 0 ? WriteFlags.Fua : WriteFlags.None;
                    await WriteAsync(image, offset, request.Data, flags).ConfigureAwait(false);
                    await FlushIfEmulatedFuaAsync(image, fua).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_FLUSH:
                if ((caps & ImageCapabilities.Flush) != 0)
                {
                    await image.FlushAsync(_token).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_TRIM:
                if ((error = ValidateWrite(image, offset, length, ImageCapabilities.Trim)) != 0)
                {
                    return NbdErrors.FromErrno(error);
                }

                // Trim is advisory: only whole aligned blocks inside the range are discarded.
                int block = MinimumBlock(image);
                long trimStart = RoundUp(offset, block);
                long trimEnd = RoundDown(offset + length, block);
                if (trimEnd > trimStart)
                {
                    await image.TrimAsync(trimStart, trimEnd - trimStart, _token).ConfigureAwait(false);
                }

                if (fua && (caps & ImageCapabilities.Flush) != 0)
                {
                    await image.FlushAsync(_token).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_WRITE_ZEROES:
                if ((error = ValidateWrite(image, offset, length, ImageCapabilities.Zero)) != 0)
                {
                    return NbdErrors.FromErrno(error);
                }

                bool fast = (request.Flags & NBD_CMD_FLAG_FAST_ZERO) != 0;
                if (fast && (caps & ImageCapabilities.FastZero) == 0)
                {
                    return NBD_ENOTSUP;
                }

                if (length != 0)
                {
                    ZeroFlags zeroFlags = ((request.Flags & NBD_CMD_FLAG_NO_HOLE) != 0 ? ZeroFlags.NoHole : ZeroFlags.None)
                        | (fast ? ZeroFlags.FastOnly : ZeroFlags.None)
                        | (fua && (caps & ImageCapabilities.Fua) != 0 ? ZeroFlags.Fua : ZeroFlags.None);
                    await ZeroAsync(image, offset, length, zeroFlags).ConfigureAwait(false);
                    await FlushIfEmulatedFuaAsync(image, fua).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_CACHE:
                // Advisory: the drivers have no page cache of their own to warm, so a validated no-op.
                return NbdErrors.FromErrno(BlockRequestValidator.Validate(image, offset, length, isWrite: false));

            case NBD_CMD_BLOCK_STATUS:
                if (!_baseAllocation || length == 0)
                {
                    return NBD_EINVAL;
                }

                if ((error = BlockRequestValidator.Validate(image, offset, length, isWrite: false)) != 0)
                {
                    return NbdErrors.FromErrno(error);
                }

                await GetExtentsAsync(image, offset, length, request).ConfigureAwait(false);
                return 0;

            default:
                return NBD_EINVAL;
        }
    }

    private static int ValidateWrite(IBlockImage image, long offset, long length, ImageCapabilities needed)
    {
        int error = BlockRequestValidator.Validate(image, offset, length, isWrite: true);
        if (error != 0)
        {
            return error;
        }

        if (!IsWritable(image))
        {
            return Errno.EPERM;
        }

        return (image.Capabilities & needed) != 0 ? 0 : Errno.EINVAL;
    }

    private ValueTask FlushIfEmulatedFuaAsync(IBlockImage image, bool fua)
    {
        ImageCapabilities caps = image.Capabilities;
        return fua && (caps & ImageCapabilities.Fua) == 0 && (caps & ImageCapabilities.Flush) != 0
            ? image.FlushAsync(_token)
            : ValueTask.CompletedTask;
    }

    private static int MinimumBlock(IBlockImage image) => Math.Max(1, image.Limits.MinimumBlockBytes);

    private static long RoundDown(long value, int block) => value - (value % block);

    private static long RoundUp(long value, int block) => RoundDown(value + block - 1, block);

    private ValueTask ReadAsync(IBlockImage image, long offset, Memory<byte> destination)
    {
        int block = MinimumBlock(image);
        if (offset % block == 0 && destination.Length % block == 0)
        {
            return image.ReadAsync(offset, destination, _token);
        }

        return ReadUnalignedAsync(image, offset, destination, block);
    }

    /// <summary>Widens a read to whole blocks through a bounce buffer (drivers assume aligned ranges).</summary>
    private async ValueTask ReadUnalignedAsync(IBlockImage image, long offset, Memory<byte> destination, int block)
    {
        long start = RoundDown(offset, block);
        long end = Math.Min(RoundUp(offset + destination.Length, block), image.SizeBytes);
        AlignedMemory bounce = AlignedBufferPool.Shared.Rent((int)(end - start));
        try
        {
            Memory<byte> wide = bounce.Memory[..(int)(end - start)];
            await image.ReadAsync(start, wide, _token).ConfigureAwait(false);
            wide.Slice((int)(offset - start), destination.Length).CopyTo(destination);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
        }
    }

    private ValueTask WriteAsync(IBlockImage image, long offset, ReadOnlyMemory<byte> source, WriteFlags flags)
    {
        int block = MinimumBlock(image);
        if (offset % block == 0 && source.Length % block == 0)
        {
            return image.WriteAsync(offset, source, flags, _token);
        }

        return ReadModifyWriteAsync(image, offset, source.Length, source, flags, block);
    }

    private async ValueTask ZeroAsync(IBlockImage image, long offset, long length, ZeroFlags flags)
    {
        int block = MinimumBlock(image);
        long end = offset + length;
        long middleStart = RoundUp(offset, block);
        long middleEnd = RoundDown(end, block);
        WriteFlags writeFlags = (flags & ZeroFlags.Fua) != 0 ? WriteFlags.Fua : WriteFlags.None;
        if (middleStart >= middleEnd)
        {
            // Entirely inside one or two partial blocks.
            await ReadModifyWriteAsync(image, offset, length, null, writeFlags, block).ConfigureAwait(false);
            return;
        }

        if (offset < middleStart)
        {
            await ReadModifyWriteAsync(image, offset, middleStart - offset, null, writeFlags, block).ConfigureAwait(false);
        }

        await image.ZeroAsync(middleStart, middleEnd - middleStart, flags, _token).ConfigureAwait(false);
        if (middleEnd < end)
        {
            await ReadModifyWriteAsync(image, middleEnd, end - middleEnd, null, writeFlags, block).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes <paramref name="source"/> (or zeros when null) at an unaligned range: reads the partial head and
    /// tail blocks, merges, writes whole blocks. Serialized per export so two unaligned writes sharing a block
    /// cannot lose each other's bytes; an aligned write covers whole blocks, so it overlaps any such write anyway.
    /// </summary>
    private async ValueTask ReadModifyWriteAsync(IBlockImage image, long offset, long length, ReadOnlyMemory<byte>? source, WriteFlags flags, int block)
    {
        long end = offset + length;
        long start = RoundDown(offset, block);
        long wideEnd = Math.Min(RoundUp(end, block), image.SizeBytes);
        int wideLength = (int)(wideEnd - start);
        SemaphoreSlim writeLock = _export!.UnalignedWriteLock;
        await writeLock.WaitAsync(_token).ConfigureAwait(false);
        AlignedMemory bounce = AlignedBufferPool.Shared.Rent(wideLength);
        try
        {
            Memory<byte> wide = bounce.Memory[..wideLength];
            long headEnd = Math.Min(start + block, wideEnd);
            if (offset > start)
            {
                await image.ReadAsync(start, wide[..(int)(headEnd - start)], _token).ConfigureAwait(false);
            }

            long tailStart = Math.Max(start, RoundDown(end, block));
            if (end < wideEnd && (tailStart >= headEnd || offset == start))
            {
                await image.ReadAsync(tailStart, wide[(int)(tailStart - start)..], _token).ConfigureAwait(false);
            }

            Memory<byte> target = wide.Slice((int)(offset - start), (int)length);
            if (source is { } data)
            {
                data.CopyTo(target);
            }
            else
            {
                target.Span.Clear();
            }

            await image.WriteAsync(start, wide, flags, _token).ConfigureAwait(false);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
            writeLock.Release();
        }
    }

    /// <summary>Fills the request's extent list, widening an unaligned query to whole blocks (clipped when sent).</summary>
    /// <summary>
    /// Reads only the runs that do not read as zeros, and marks the request sparse when some run does: the reply
    /// then carries OFFSET_HOLE chunks for those runs (qemu-nbd does the same), so reading an empty disk costs
    /// neither disk I/O nor bandwidth. Runs the extent map does not cover are read as data.
    /// </summary>
    private async ValueTask ReadSparseAsync(IBlockImage image, long offset, NbdRequest request)
    {
        Memory<byte> data = request.Data;
        long end = offset + data.Length;
        await GetExtentsAsync(image, offset, data.Length, request).ConfigureAwait(false);
        bool anyZero = false;
        foreach (ImageExtent extent in request.Extents.AsSpan())
        {
            if ((extent.Flags & ExtentFlags.Zero) != 0 && Math.Min(end, extent.OffsetBytes + extent.LengthBytes) > Math.Max(offset, extent.OffsetBytes))
            {
                anyZero = true;
                break;
            }
        }

        if (!anyZero)
        {
            await ReadAsync(image, offset, data).ConfigureAwait(false);
            return;
        }

        request.Sparse = true;
        long position = offset;
        for (int i = 0; i < request.Extents.Count && position < end; i++)
        {
            ImageExtent extent = request.Extents[i];
            long runEnd = Math.Min(end, extent.OffsetBytes + extent.LengthBytes);
            if (runEnd <= position)
            {
                continue;
            }

            if ((extent.Flags & ExtentFlags.Zero) == 0)
            {
                await ReadAsync(image, position, data.Slice((int)(position - offset), (int)(runEnd - position))).ConfigureAwait(false);
            }

            position = runEnd;
        }

        if (position < end)
        {
            await ReadAsync(image, position, data[(int)(position - offset)..]).ConfigureAwait(false);
        }
    }

    private async ValueTask GetExtentsAsync(IBlockImage image, long offset, long length, NbdRequest request)
    {
        ExtentList extents = request.Extents;
        extents.Clear();
        if ((image.Capabilities & ImageCapabilities.Extents) == 0)
        {
            extents.Add(offset, length, ExtentFlags.Data);
            return;
        }

        int block = MinimumBlock(image);
        long start = RoundDown(offset, block);
        long end = Math.Min(RoundUp(offset + length, block), image.SizeBytes);
        await image.GetExtentsAsync(start, end - start, extents, _token).ConfigureAwait(false);
        if (extents.Count == 0 || extents[0].OffsetBytes > offset)
        {
            throw new ErrnoIOException(Errno.EIO, image.Path, "extent map does not cover the request");
        }
    }
}
