using System.Diagnostics;
using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    private static readonly ReadOnlyMemory<byte> s_zeros = new byte[1024 * 1024];

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        Debug.Assert(offsetBytes % VhdLayout.SectorSize == 0 && source.Length % VhdLayout.SectorSize == 0, "the server aligns VHD requests to sectors");
        if (IoLoop.Current is not null && !IsReadOnly && TryWriteQueued(offsetBytes, source, flags, out ValueTask queued))
        {
            return queued;
        }

        try
        {
            if (IsReadOnly)
            {
                throw StorageErrors.ReadOnly(Path);
            }

            Write(offsetBytes, source.Span);
            if ((flags & WriteFlags.Fua) != 0)
            {
                _file.Flush();
            }

            return ValueTask.CompletedTask;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ImageFormatException)
        {
            return ValueTask.FromException(e);
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => _file.FlushAsync();

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    public async ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            throw StorageErrors.ReadOnly(Path);
        }

        // Discard is advisory. Without a parent, freeing the data area under allocated blocks makes them read as
        // zeros for every reader (qemu ignores bitmaps); with a parent, clearing bits would expose older data
        // non-atomically, so a differencing disk keeps its data.
        if (_header is not null && _parent is null && _cipher is null)
        {
            await PunchAllocatedAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    public async ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            throw StorageErrors.ReadOnly(Path);
        }

        bool fast = _cipher is null && _header is not null && _parent is null && !_file.IsBlockDevice && (flags & ZeroFlags.NoHole) == 0;
        if (fast)
        {
            // Unallocated blocks already read as zeros; allocated ones get their data area punched.
            await PunchAllocatedAsync(offsetBytes, lengthBytes).ConfigureAwait(false);
        }
        else if ((flags & ZeroFlags.FastOnly) != 0)
        {
            throw new ErrnoIOException(Errno.EOPNOTSUPP, Path, "fast zero");
        }
        else
        {
            // Written zeros allocate blocks and set bits: the synchronous path and its crash-safe order (MayBlock).
            while (lengthBytes > 0)
            {
                int n = (int)Math.Min(lengthBytes, s_zeros.Length);
                Write(offsetBytes, s_zeros.Span[..n]);
                offsetBytes += n;
                lengthBytes -= n;
            }
        }

        if ((flags & ZeroFlags.Fua) != 0)
        {
            await _file.FlushAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Makes the data of allocated blocks in a range read as zeros, one block's piece after another (through the
    /// thread's ring when it has one). Only data areas change: no metadata is written, so there is no order to keep.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask PunchAllocatedAsync(long offsetBytes, long lengthBytes)
    {
        long end = offsetBytes + lengthBytes;
        while (offsetBytes < end)
        {
            int block = (int)(offsetBytes >> _blockShift);
            int within = (int)(offsetBytes & (_blockSize - 1));
            int pieceBytes = (int)Math.Min(end - offsetBytes, _blockSize - within);
            uint entry = GetBatEntry(block);
            if (entry != VhdLayout.Unallocated)
            {
                long at = BlockDataOffsetBytes(entry) + within;
                if (!await _file.TryPunchHoleAsync(at, pieceBytes).ConfigureAwait(false)
                    && !await _file.TryZeroRangeAsync(at, pieceBytes).ConfigureAwait(false))
                {
                    await _file.WriteZerosAsync(at, pieceBytes).ConfigureAwait(false);
                }
            }

            offsetBytes += pieceBytes;
        }
    }

    private void Write(long offsetBytes, ReadOnlySpan<byte> source)
    {
        IVhdSectorCipher? cipher = _cipher;
        if (cipher is not null)
        {
            WriteEncrypted(cipher, offsetBytes, source);
            return;
        }

        WriteStored(offsetBytes, source);
    }

    /// <summary>Stores sectors as given (already encrypted for an encrypted layer).</summary>
    private void WriteStored(long offsetBytes, ReadOnlySpan<byte> source)
    {
        if (_header is null)
        {
            _file.Write(source, offsetBytes);
            return;
        }

        while (!source.IsEmpty)
        {
            int block = (int)(offsetBytes >> _blockShift);
            int within = (int)(offsetBytes & (_blockSize - 1));
            int pieceBytes = Math.Min(source.Length, _blockSize - within);
            ReadOnlySpan<byte> piece = source[..pieceBytes];
            uint entry = GetBatEntry(block);
            if (entry == VhdLayout.Unallocated)
            {
                if (!TryAllocateAndWrite(block, within, piece))
                {
                    continue; // another writer allocated the block first: write into it as usual
                }
            }
            else
            {
                _file.Write(piece, BlockDataOffsetBytes(entry) + within);
                if (!IsBlockFull(block))
                {
                    MarkPresent(block, entry, within / VhdLayout.SectorSize, pieceBytes / VhdLayout.SectorSize);
                }
            }

            offsetBytes += pieceBytes;
            source = source[pieceBytes..];
        }
    }

    /// <summary>Sets bitmap bits after their data is written; the bitmap write happens before the write is acknowledged.</summary>
    private void MarkPresent(int block, uint entry, int firstSector, int sectorCount)
    {
        byte[] current = GetBitmap(block, entry);
        if (VhdBitmap.AllSet(current, firstSector, sectorCount))
        {
            return;
        }

        lock (_bitmapLocks[block & (_bitmapLocks.Length - 1)])
        {
            current = GetBitmapLocked(block, entry);
            if (VhdBitmap.AllSet(current, firstSector, sectorCount))
            {
                return;
            }

            // Copy-on-write: readers keep a consistent committed bitmap while the new one is written.
            byte[] updated = (byte[])current.Clone();
            VhdBitmap.SetRange(updated, firstSector, sectorCount);
            _dirty = true;
            _file.Write(updated, (long)entry * VhdLayout.SectorSize);
            PublishBitmap(block, updated);
        }
    }

    /// <summary>
    /// Allocates a block at the end of data and writes the first data into it, in blktap's crash-safe order:
    /// zeroed gap and data area, guest data, bitmap, (fdatasync), then the one BAT sector. A crash before the BAT
    /// write leaks space but never exposes unwritten sectors (data-plane.md 2.3.2, 2.3.5).
    /// </summary>
    private bool TryAllocateAndWrite(int block, int within, ReadOnlySpan<byte> piece)
    {
        lock (_allocationLock)
        {
            if (GetBatEntry(block) != VhdLayout.Unallocated)
            {
                return false;
            }

            long position = _nextDataSector;
            long entry = position + VhdLayout.AlignmentGap(position, _bitmapSectors);
            if (entry + _bitmapSectors + _sectorsPerBlock > uint.MaxValue)
            {
                throw new ErrnoIOException(Errno.ENOSPC, Path, $"allocate block {block}: VHD block offsets must stay below 2^32 sectors (2 TiB of file)");
            }

            long dataStart = (entry + _bitmapSectors) * VhdLayout.SectorSize;
            long dataEnd = dataStart + _blockSize;
            _dirty = true;

            // Gap sectors (which may hold the old trailing footer) become zeros.
            if (entry > position)
            {
                _file.WriteZeros(position * VhdLayout.SectorSize, (entry - position) * VhdLayout.SectorSize);
            }

            PrepareDataArea(dataStart, dataEnd);
            _file.Write(piece, dataStart + within);

            byte[] bitmap = new byte[_bitmapSectors * VhdLayout.SectorSize];
            VhdBitmap.SetRange(bitmap, within / VhdLayout.SectorSize, piece.Length / VhdLayout.SectorSize);
            _file.Write(bitmap, entry * VhdLayout.SectorSize);
            if (_options.SafeAllocation)
            {
                _file.Flush();
            }

            WriteBatEntry(block, (uint)entry);
            lock (_bitmapLocks[block & (_bitmapLocks.Length - 1)])
            {
                PublishBitmap(block, bitmap);
            }

            _nextDataSector = entry + _bitmapSectors + _sectorsPerBlock;
            Volatile.Write(ref _bat[block], (uint)entry);
            return true;
        }
    }

    /// <summary>Makes a new block's data area read as zeros (qemu reads allocated blocks without consulting bitmaps).</summary>
    private void PrepareDataArea(long dataStart, long dataEnd)
    {
        if (_file.IsBlockDevice)
        {
            // Sparse mode, as blktap on LVM: the bitmap alone decides which sectors are present.
            return;
        }

        long length = _file.Length;
        if (dataStart < length)
        {
            long existing = Math.Min(length, dataEnd) - dataStart;
            if (!_file.TryZeroRange(dataStart, existing) && !_file.TryPunchHole(dataStart, existing))
            {
                _file.WriteZeros(dataStart, existing);
            }
        }

        if (length < dataEnd)
        {
            // Preallocate (blktap writes zeros here); a file system without fallocate gets a sparse extension.
            if (PosixFile.TryFallocate(_file.Handle, FallocateMode.Allocate, Math.Max(dataStart, length), dataEnd - Math.Max(dataStart, length)) != 0)
            {
                _file.SetLength(dataEnd);
            }
        }
    }
}
