using System.Diagnostics;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    /// <summary>Sectors this layer served from its own blocks (or as zeros it owns); reads passed down count on the parent.</summary>
    public LayerCounters Counters { get; } = new();

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Debug.Assert(offsetBytes % VhdLayout.SectorSize == 0 && destination.Length % VhdLayout.SectorSize == 0, "the server aligns VHD requests to sectors");
        if (IoLoop.Current is not null && TryReadQueued(offsetBytes, destination, out ValueTask queued))
        {
            return queued;
        }

        try
        {
            Read(offsetBytes, destination);
            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ImageFormatException)
        {
            return ValueTask.FromException(e);
        }
    }

    private void Read(long offsetBytes, Memory<byte> destination)
    {
        if (_header is null)
        {
            ReadOwn(offsetBytes, offsetBytes, destination.Span);
            return;
        }

        while (!destination.IsEmpty)
        {
            int block = (int)(offsetBytes >> _blockShift);
            int within = (int)(offsetBytes & (_blockSize - 1));
            int pieceBytes = Math.Min(destination.Length, _blockSize - within);
            uint entry = GetBatEntry(block);
            if (entry == VhdLayout.Unallocated)
            {
                ReadBelow(offsetBytes, destination[..pieceBytes]);
            }
            else if (IsBlockFull(block))
            {
                ReadOwn(offsetBytes, BlockDataOffsetBytes(entry) + within, destination.Span[..pieceBytes]);
            }
            else
            {
                byte[] bitmap = GetBitmap(block, entry);
                int sector = within / VhdLayout.SectorSize;
                int runSectors = VhdBitmap.RunLength(bitmap, sector, pieceBytes / VhdLayout.SectorSize, out bool present);
                pieceBytes = runSectors * VhdLayout.SectorSize;
                if (present)
                {
                    ReadOwn(offsetBytes, BlockDataOffsetBytes(entry) + within, destination.Span[..pieceBytes]);
                }
                else
                {
                    ReadBelow(offsetBytes, destination[..pieceBytes]);
                }
            }

            offsetBytes += pieceBytes;
            destination = destination[pieceBytes..];
        }
    }

    /// <summary>Sectors this layer does not hold: the parent's, zeros past the parent's end, zeros at the chain bottom.</summary>
    private void ReadBelow(long offsetBytes, Memory<byte> destination)
    {
        IBlockImage? parent = _parent;
        long parentBytes = parent is null ? 0 : Math.Clamp(parent.SizeBytes - offsetBytes, 0, destination.Length);
        if (parentBytes > 0)
        {
            // Blocking for the parent's answer: its I/O must not go to this thread's ring, which nobody reaps meanwhile.
            using IoLoop.SynchronousScope synchronous = IoLoop.Synchronous();
            ValueTask read = parent!.ReadAsync(offsetBytes, destination[..(int)parentBytes]);
            if (!read.IsCompletedSuccessfully)
            {
                read.AsTask().GetAwaiter().GetResult();
            }
        }

        destination.Span[(int)parentBytes..].Clear();

        // Zeros past the parent's end, or at the chain's bottom, are this layer's answer.
        Counters.CountRead(destination.Length - parentBytes);
    }

    private void ReadLocal(long fileOffset, Span<byte> destination)
    {
        int n = _file.Read(destination, fileOffset);
        if (n != destination.Length)
        {
            // A file truncated inside a block: fail only the requests that touch the missing bytes (data-plane.md 8.2.9).
            throw new ErrnoIOException(Errno.EIO, Path, $"read of {destination.Length} bytes at file offset {fileOffset}: file ends at {fileOffset + n}");
        }
    }

    /// <summary>The block's committed sector bitmap; loaded under the block's lock so a load never races a bitmap write.</summary>
    private byte[] GetBitmap(int block, uint entry)
    {
        byte[]? bitmap = Volatile.Read(ref _bitmaps[block]);
        if (bitmap is not null)
        {
            return bitmap;
        }

        lock (_bitmapLocks[block & (_bitmapLocks.Length - 1)])
        {
            return GetBitmapLocked(block, entry);
        }
    }

    private byte[] GetBitmapLocked(int block, uint entry)
    {
        byte[]? bitmap = Volatile.Read(ref _bitmaps[block]);
        if (bitmap is not null)
        {
            return bitmap;
        }

        bitmap = new byte[_bitmapSectors * VhdLayout.SectorSize];
        int n = _file.Read(bitmap, (long)entry * VhdLayout.SectorSize);
        if (n != bitmap.Length)
        {
            throw new ErrnoIOException(Errno.EIO, Path, $"sector bitmap of block {block} at offset {(long)entry * VhdLayout.SectorSize}: file ends at {((long)entry * VhdLayout.SectorSize) + n}");
        }

        PublishBitmap(block, bitmap);
        return bitmap;
    }

    private void PublishBitmap(int block, byte[] bitmap)
    {
        if (VhdBitmap.IsFull(bitmap, _sectorsPerBlock))
        {
            SetBlockFull(block);
        }

        if (Interlocked.Exchange(ref _bitmaps[block], bitmap) is null && Interlocked.Increment(ref _cachedBitmaps) > MaxCachedBitmaps)
        {
            EvictBitmaps();
        }
    }

    private void EvictBitmaps()
    {
        // Clock sweep over the cache; dropping an entry is always safe because loads and bitmap writes
        // for a block happen under that block's lock and the disk copy is authoritative.
        lock (_cacheLock)
        {
            int target = MaxCachedBitmaps * 3 / 4;
            int scanned = 0;
            while (Volatile.Read(ref _cachedBitmaps) > target && scanned++ < _bitmaps.Length * 2)
            {
                _evictionHand = (_evictionHand + 1) % _bitmaps.Length;
                if (Interlocked.Exchange(ref _bitmaps[_evictionHand], null) is not null)
                {
                    Interlocked.Decrement(ref _cachedBitmaps);
                }
            }
        }
    }
}
