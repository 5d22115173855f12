using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        try
        {
            GetExtents(offsetBytes, lengthBytes, extents);
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ImageFormatException)
        {
            return ValueTask.FromException(e);
        }
    }

    public ValueTask GetOwnAllocationAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        try
        {
            GetExtents(offsetBytes, lengthBytes, extents, ownOnly: true);
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ImageFormatException)
        {
            return ValueTask.FromException(e);
        }
    }

    /// <summary>The chain's map, or with <paramref name="ownOnly"/> this layer's blocks and bitmaps alone (Hole where reads fall through).</summary>
    private void GetExtents(long offsetBytes, long lengthBytes, ExtentList extents, bool ownOnly = false)
    {
        if (_header is null)
        {
            extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
            return;
        }

        long end = offsetBytes + lengthBytes;
        while (offsetBytes < end)
        {
            int block = (int)(offsetBytes >> _blockShift);
            int within = (int)(offsetBytes & (_blockSize - 1));
            long pieceBytes = Math.Min(end - offsetBytes, _blockSize - within);
            uint entry = GetBatEntry(block);
            if (entry == VhdLayout.Unallocated)
            {
                ExtentsBelow(offsetBytes, pieceBytes, extents, ownOnly);
            }
            else if (IsBlockFull(block))
            {
                extents.Add(offsetBytes, pieceBytes, ExtentFlags.Data);
            }
            else
            {
                // Unlike tapdisk (which reports a cold block as all data), read the bitmap: the map must be exact.
                byte[] bitmap = GetBitmap(block, entry);
                int first = within / VhdLayout.SectorSize;
                int count = (int)((pieceBytes + VhdLayout.SectorSize - 1) / VhdLayout.SectorSize);
                int runSectors = VhdBitmap.RunLength(bitmap, first, count, out bool present);
                pieceBytes = Math.Min(pieceBytes, ((long)runSectors * VhdLayout.SectorSize) - (offsetBytes % VhdLayout.SectorSize));
                if (present)
                {
                    extents.Add(offsetBytes, pieceBytes, ExtentFlags.Data);
                }
                else
                {
                    ExtentsBelow(offsetBytes, pieceBytes, extents, ownOnly);
                }
            }

            offsetBytes += pieceBytes;
        }
    }

    private void ExtentsBelow(long offsetBytes, long lengthBytes, ExtentList extents, bool ownOnly)
    {
        if (ownOnly)
        {
            extents.Add(offsetBytes, lengthBytes, ExtentFlags.Hole);
            return;
        }

        IBlockImage? parent = _parent;
        long parentBytes = parent is null ? 0 : Math.Clamp(parent.SizeBytes - offsetBytes, 0, lengthBytes);
        if (parentBytes > 0)
        {
            // Blocking for the parent's answer: its I/O must not go to this thread's ring, which nobody reaps meanwhile.
            using IoLoop.SynchronousScope synchronous = IoLoop.Synchronous();
            ValueTask t = parent!.GetExtentsAsync(offsetBytes, parentBytes, extents);
            if (!t.IsCompletedSuccessfully)
            {
                t.AsTask().GetAwaiter().GetResult();
            }
        }

        extents.Add(offsetBytes + parentBytes, lengthBytes - parentBytes, ExtentFlags.Hole | ExtentFlags.Zero);
    }
}
