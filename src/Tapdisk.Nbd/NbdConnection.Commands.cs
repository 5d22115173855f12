using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Nbd;

/// <summary>
/// Executes one request on an I/O worker through the VBD's backend (validation once there; unaligned ranges and FUA
/// handled by its block-size layer), then writes the reply.
/// </summary>
internal sealed partial class NbdConnection
{
    // RunRequestAsync never faults and queues the reply itself: nothing awaits it.
    public void Execute(NbdRequest request) => _ = RunRequestAsync(request);

    private async DetachedCall RunRequestAsync(NbdRequest request)
    {
        BlockBackend backend = _export!.Backend;
        Exception? failure = null;
        TdStatsPage? page = request.Command is NBD_CMD_READ or NBD_CMD_WRITE ? _server.StatsPage : null;
        long started = 0;
        if (page is not null)
        {
            page.Submitted(request.Command == NBD_CMD_WRITE);
            started = System.Diagnostics.Stopwatch.GetTimestamp();
        }

        try
        {
            request.Error = await ExecuteAsync(request, backend).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Driver errors fail this request only (STYLE.md section 6).
            failure = e;
            request.Error = NbdErrors.FromException(e);
        }
        finally
        {
            backend.Exit();
        }

        if (page is not null)
        {
            if (request.Error == 0)
            {
                page.Completed(request.Command == NBD_CMD_WRITE, (long)(request.LengthBytes / IoLimits.SectorSize), (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMicroseconds);
            }
            else
            {
                page.Failed();
            }
        }

        if (request.Error != 0)
        {
            Log.RequestFailed(_logger, _id, request.Command, request.OffsetBytes, request.LengthBytes, request.Error, failure);
        }

        QueueReply(request);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder<>))]
    private async ValueTask<uint> ExecuteAsync(NbdRequest request, BlockBackend backend)
    {
        long offset = request.OffsetBytes > long.MaxValue ? -1 : (long)request.OffsetBytes;
        if (request.LengthBytes > long.MaxValue)
        {
            // Only an extended header can say this; no export is that big.
            return NBD_EINVAL;
        }

        long length = (long)request.LengthBytes;
        bool fua = (request.Flags & NBD_CMD_FLAG_FUA) != 0;
        int error;
        switch (request.Command)
        {
            case NBD_CMD_READ:
                if ((error = backend.Validate(BlockOperation.Read, offset, length)) != 0)
                {
                    return FromValidation(error);
                }

                if (length != 0)
                {
                    if (_structuredReplies && length >= _options.SparseReadMinBytes && (backend.Capabilities & ImageCapabilities.Extents) != 0)
                    {
                        await ReadSparseAsync(backend, offset, request).ConfigureAwait(false);
                    }
                    else
                    {
                        await backend.ReadAsync(offset, request.Data, _token).ConfigureAwait(false);
                    }
                }

                return 0;

            case NBD_CMD_WRITE:
                if ((error = backend.Validate(BlockOperation.Write, offset, length)) != 0)
                {
                    return FromValidation(error);
                }

                if (length != 0)
                {
                    await backend.WriteAsync(offset, request.Data, fua ? WriteFlags.Fua : WriteFlags.None, _token).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_FLUSH:
                await backend.FlushAsync(_token).ConfigureAwait(false);
                return 0;

            case NBD_CMD_TRIM:
                if ((error = backend.Validate(BlockOperation.Trim, offset, length)) != 0)
                {
                    return FromValidation(error);
                }

                await backend.TrimAsync(offset, length, _token).ConfigureAwait(false);
                if (fua)
                {
                    await backend.FlushAsync(_token).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_WRITE_ZEROES:
                if ((error = backend.Validate(BlockOperation.Zero, offset, length)) != 0)
                {
                    return FromValidation(error);
                }

                bool fast = (request.Flags & NBD_CMD_FLAG_FAST_ZERO) != 0;
                if (fast && (backend.Capabilities & ImageCapabilities.FastZero) == 0)
                {
                    return NBD_ENOTSUP;
                }

                if (length != 0)
                {
                    ZeroFlags zeroFlags = ((request.Flags & NBD_CMD_FLAG_NO_HOLE) != 0 ? ZeroFlags.NoHole : ZeroFlags.None)
                        | (fast ? ZeroFlags.FastOnly : ZeroFlags.None)
                        | (fua ? ZeroFlags.Fua : ZeroFlags.None);
                    await backend.ZeroAsync(offset, length, zeroFlags, _token).ConfigureAwait(false);
                }

                return 0;

            case NBD_CMD_CACHE:
                // Advisory: the drivers have no page cache of their own to warm, so a validated no-op.
                return FromValidation(backend.Validate(BlockOperation.Query, offset, length));

            case NBD_CMD_BLOCK_STATUS:
                if (!(_baseAllocation || _dirtyBitmap || _allocationDepth) || length == 0)
                {
                    return NBD_EINVAL;
                }

                if ((error = backend.Validate(BlockOperation.Query, offset, length)) != 0)
                {
                    return FromValidation(error);
                }

                if (_baseAllocation)
                {
                    await GetExtentsAsync(backend, offset, length, request).ConfigureAwait(false);
                }

                if (_dirtyBitmap)
                {
                    GetDirtyExtents(backend, offset, length, request);
                }

                if (_allocationDepth)
                {
                    await GetDepthExtentsAsync(backend, offset, length, request).ConfigureAwait(false);
                }

                return 0;

            default:
                return NBD_EINVAL;
        }
    }

    /// <summary>A command the export did not advertise is EINVAL on the wire (the NBD protocol's rule), not ENOTSUP.</summary>
    private static uint FromValidation(int errno) => errno == Errno.EOPNOTSUPP ? NBD_EINVAL : NbdErrors.FromErrno(errno);

    /// <summary>
    /// Reads only the runs that do not read as zeros, and marks the request sparse when some run does: the reply
    /// then carries OFFSET_HOLE chunks for those runs (qemu-nbd does the same), so reading an empty disk costs
    /// neither disk I/O nor bandwidth. Runs the extent map does not cover are read as data.
    /// </summary>
    private async ValueTask ReadSparseAsync(BlockBackend backend, long offset, NbdRequest request)
    {
        Memory<byte> data = request.Data;
        long end = offset + data.Length;
        await GetExtentsAsync(backend, offset, data.Length, request).ConfigureAwait(false);
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
            await backend.ReadAsync(offset, data, _token).ConfigureAwait(false);
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
                await backend.ReadAsync(position, data.Slice((int)(position - offset), (int)(runEnd - position)), _token).ConfigureAwait(false);
            }
            else
            {
                backend.CountHoleRead(runEnd - position);
            }

            position = runEnd;
        }

        if (position < end)
        {
            await backend.ReadAsync(position, data[(int)(position - offset)..], _token).ConfigureAwait(false);
        }
    }

    /// <summary>Fills the request's extent list (the backend widens an unaligned query to whole blocks; clipped when sent).</summary>
    /// <summary>
    /// The change tracker's units over the request, merged into runs (1 = dirty). With no tracker in the stack now (a
    /// plain unpause dropped the log) everything reads as dirty: a backup then copies too much, never too little.
    /// </summary>
    private void GetDirtyExtents(BlockBackend backend, long offset, long length, NbdRequest request)
    {
        ExtentList extents = request.DirtyExtents;
        extents.Clear();
        IChangeTracker? tracker = IChangeTracker.Find(backend.Image);
        if (tracker is null)
        {
            extents.Add(offset, length, (ExtentFlags)DirtyBitmapDirty);
            return;
        }

        int unitBytes = tracker.UnitBytes;
        long end = offset + length;
        int limit = (request.Flags & NBD_CMD_FLAG_REQ_ONE) != 0 ? 1 : _options.MaxExtentsPerReply;
        for (long unit = offset / unitBytes; unit * unitBytes < end; unit++)
        {
            long from = Math.Max(offset, unit * unitBytes);
            long to = Math.Min(end, (unit + 1) * unitBytes);
            extents.Add(from, to - from, tracker.IsMarked(unit) ? (ExtentFlags)DirtyBitmapDirty : ExtentFlags.Data);
            if (extents.Count > limit)
            {
                // Enough runs for one reply; the client asks again from where the reply ends.
                break;
            }
        }
    }

    /// <summary>
    /// qemu:allocation-depth: each format layer's own allocation, leaf first (filters above it are not layers of the
    /// chain), merged so a run gets the depth of the first layer holding it (1 = the leaf), 0 where none does.
    /// </summary>
    private async ValueTask GetDepthExtentsAsync(BlockBackend backend, long offset, long length, NbdRequest request)
    {
        List<ExtentList> layers = request.LayerExtents;
        int count = 0;
        long end = offset + length;
        for (IBlockImage? layer = backend.Image; layer is not null; layer = layer.Parent)
        {
            if (layer.Kind == LayerKind.Filter)
            {
                continue;
            }

            if (count == layers.Count)
            {
                layers.Add(new ExtentList());
            }

            ExtentList own = layers[count++];
            own.Clear();
            long layerEnd = Math.Min(end, layer.SizeBytes);
            if (layerEnd > offset)
            {
                await layer.GetOwnAllocationAsync(offset, layerEnd - offset, own, _token).ConfigureAwait(false);
            }

            // A parent shorter than its child holds nothing past its end.
            own.Add(Math.Max(offset, layerEnd), end - Math.Max(offset, layerEnd), ExtentFlags.Hole);
        }

        ExtentList depths = request.DepthExtents;
        depths.Clear();
        Span<int> cursors = count <= 64 ? stackalloc int[count] : new int[count];
        cursors.Clear();
        long position = offset;
        while (position < end)
        {
            int depth = 0;
            long runEnd = end;
            for (int i = 0; i < count; i++)
            {
                ExtentList own = layers[i];
                while (cursors[i] < own.Count - 1 && own[cursors[i]].OffsetBytes + own[cursors[i]].LengthBytes <= position)
                {
                    cursors[i]++;
                }

                ImageExtent extent = own[cursors[i]];
                runEnd = Math.Min(runEnd, extent.OffsetBytes + extent.LengthBytes);
                if ((extent.Flags & ExtentFlags.Hole) == 0)
                {
                    depth = i + 1;
                    break;
                }
            }

            depths.Add(position, runEnd - position, (ExtentFlags)depth);
            position = runEnd;
        }
    }

    private async ValueTask GetExtentsAsync(BlockBackend backend, long offset, long length, NbdRequest request)
    {
        ExtentList extents = request.Extents;
        extents.Clear();
        if ((backend.Capabilities & ImageCapabilities.Extents) == 0)
        {
            extents.Add(offset, length, ExtentFlags.Data);
            return;
        }

        await backend.GetExtentsAsync(offset, length, extents, _token).ConfigureAwait(false);
        if (extents.Count == 0 || extents[0].OffsetBytes > offset)
        {
            throw new ErrnoIOException(Errno.EIO, backend.Image.Path, "extent map does not cover the request");
        }
    }
}
