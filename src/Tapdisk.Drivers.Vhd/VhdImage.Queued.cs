using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// The io_uring path. On a thread with an <see cref="IoLoop"/>, a request whose data lies in one place known without
/// metadata I/O (a full or bitmap-cached block, an unallocated range the parent serves) is one queued read or write
/// of the file, or the parent's own request; a trim is fallocate calls on data areas. Everything else (a bitmap to
/// load, a block to allocate, bits to set, an encrypted layer) keeps the synchronous code and its crash-safe order;
/// frontends send those to the I/O workers (<see cref="MayBlock"/>), so metadata never waits on the loop.
/// </summary>
public sealed partial class VhdImage
{
    private const int FileBlockBytes = 4096;

    private enum Location
    {
        /// <summary>Needs metadata I/O, spans blocks, or is encrypted: the synchronous path.</summary>
        Unknown,

        /// <summary>All of it in this layer's file, at one offset.</summary>
        Own,

        /// <summary>None of it in this layer: the parent's (or zeros at the chain's bottom).</summary>
        Below,
    }

    public bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes)
    {
        if (ImageFile.MayBlockHere)
        {
            return true;
        }

        return operation switch
        {
            BlockOperation.Read => Locate(offsetBytes, lengthBytes, out _) switch
            {
                Location.Own => false,
                Location.Below => _parent is not null && _parent.MayBlock(BlockOperation.Read, offsetBytes, lengthBytes),
                _ => true,
            },
            BlockOperation.Write => !IsReadOnly && (Locate(offsetBytes, lengthBytes, out long fileOffset) != Location.Own || !IsFileBlockAligned(fileOffset, lengthBytes)),
            BlockOperation.Flush => false,

            // A no-op, or fallocate calls (and written zeros) on data areas, through the ring. Zero stays with the
            // workers: its flags are not known here, and with NoHole (or a parent) it writes zeros through allocation.
            BlockOperation.Trim => false,
            _ => true,
        };
    }

    /// <summary>Starts a read the loop can take whole; false leaves it to the synchronous path.</summary>
    private bool TryReadQueued(long offsetBytes, Memory<byte> destination, out ValueTask read)
    {
        read = default;
        switch (Locate(offsetBytes, destination.Length, out long fileOffset))
        {
            case Location.Own:
                read = ReadOwnQueued(fileOffset, destination);
                return true;
            case Location.Below when _parent is null:
                destination.Span.Clear();
                Counters.CountRead(destination.Length);
                read = ValueTask.CompletedTask;
                return true;
            case Location.Below:
                read = _parent.ReadAsync(offsetBytes, destination);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Starts an overwrite the loop can take whole (no bit to set, no block to allocate).</summary>
    private bool TryWriteQueued(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags, out ValueTask write)
    {
        write = default;
        if (Locate(offsetBytes, source.Length, out long fileOffset) != Location.Own)
        {
            return false;
        }

        ValueTask data = _file.WriteAsync(source, fileOffset);
        write = (flags & WriteFlags.Fua) == 0 ? data : FlushAfterAsync(data);
        return true;
    }

    /// <summary>Where a range's data is, if that needs no metadata I/O; the file offset for <see cref="Location.Own"/>.</summary>
    private Location Locate(long offsetBytes, long lengthBytes, out long fileOffset)
    {
        fileOffset = offsetBytes;
        if (_cipher is not null || lengthBytes <= 0)
        {
            return Location.Unknown;
        }

        if (_header is null)
        {
            return Location.Own;
        }

        int block = (int)(offsetBytes >> _blockShift);
        int within = (int)(offsetBytes & (_blockSize - 1));
        if (within + lengthBytes > _blockSize)
        {
            return Location.Unknown;
        }

        uint entry = GetBatEntry(block);
        if (entry == VhdLayout.Unallocated)
        {
            return CoveredBelow(offsetBytes, lengthBytes) ? Location.Below : Location.Unknown;
        }

        fileOffset = BlockDataOffsetBytes(entry) + within;
        if (IsBlockFull(block))
        {
            return Location.Own;
        }

        byte[]? bitmap = Volatile.Read(ref _bitmaps[block]);
        if (bitmap is null)
        {
            return Location.Unknown;
        }

        int sectors = (int)(lengthBytes / VhdLayout.SectorSize);
        if (VhdBitmap.RunLength(bitmap, within / VhdLayout.SectorSize, sectors, out bool present) < sectors)
        {
            return Location.Unknown;
        }

        return present ? Location.Own : CoveredBelow(offsetBytes, lengthBytes) ? Location.Below : Location.Unknown;
    }

    /// <summary>
    /// Whether a write lands on whole file-system blocks. A VHD written by qemu (or an older blktap) puts most blocks'
    /// data 512 bytes past a 4 KiB boundary; ext4 serializes such direct writes per inode, and io_uring hands each to
    /// a kernel worker thread after a failed non-blocking try. On the I/O workers they cost less (measured: VHD 4 KiB
    /// random writes at QD32).
    /// </summary>
    private static bool IsFileBlockAligned(long fileOffset, long lengthBytes) => ((fileOffset | lengthBytes) & (FileBlockBytes - 1)) == 0;

    /// <summary>A range below this layer that is all zeros (no parent) or all inside the parent.</summary>
    private bool CoveredBelow(long offsetBytes, long lengthBytes) => _parent is null || _parent.SizeBytes >= offsetBytes + lengthBytes;

#pragma warning disable CA2012 // Consumed once: read here when complete, else awaited once.
    private ValueTask ReadOwnQueued(long fileOffset, Memory<byte> destination)
    {
        ValueTask<int> read = _file.ReadAsync(destination, fileOffset);
        if (!read.IsCompletedSuccessfully)
        {
            return FinishReadOwnAsync(read, fileOffset, destination.Length);
        }

        FinishReadOwn(read.Result, fileOffset, destination.Length);
        return ValueTask.CompletedTask;
    }
#pragma warning restore CA2012

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask FinishReadOwnAsync(ValueTask<int> read, long fileOffset, int length)
    {
        FinishReadOwn(await read.ConfigureAwait(false), fileOffset, length);
    }

    private void FinishReadOwn(int n, long fileOffset, int length)
    {
        if (n != length)
        {
            // A file truncated inside a block: fail only the requests that touch the missing bytes (data-plane.md 8.2.9).
            throw new ErrnoIOException(Errno.EIO, Path, $"read of {length} bytes at file offset {fileOffset}: file ends at {fileOffset + n}");
        }

        Counters.CountRead(length);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask FlushAfterAsync(ValueTask write)
    {
        await write.ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }
}
