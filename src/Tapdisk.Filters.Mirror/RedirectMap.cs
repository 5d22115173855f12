namespace Tapdisk.Filters.Mirror;

/// <summary>
/// The sectors the secondary holds in place of the primary, once the primary ran out of space: one bit per 512-byte
/// sector, allocated 4 MiB of disk (1 KiB of bits) at a time on the first change there, so a large disk costs only
/// what was redirected. Bits are only ever set; a set bit is published after the secondary completed the change.
/// </summary>
internal sealed class RedirectMap
{
    private const int SectorShift = 9;
    private const int ChunkSectorsShift = 13;
    private const long ChunkSectors = 1L << ChunkSectorsShift;
    private const int WordsPerChunk = (int)(ChunkSectors / 64);

    private readonly ulong[]?[] _chunks;

    public RedirectMap(long sizeBytes)
    {
        long sectors = (sizeBytes + (1 << SectorShift) - 1) >> SectorShift;
        _chunks = new ulong[]?[(sectors + ChunkSectors - 1) >> ChunkSectorsShift];
    }

    /// <summary>Marks the sectors of [offset, offset + length); both are whole sectors (the filter's minimum block).</summary>
    public void Mark(long offsetBytes, long lengthBytes)
    {
        long sector = offsetBytes >> SectorShift;
        long end = (offsetBytes + lengthBytes + (1 << SectorShift) - 1) >> SectorShift;
        while (sector < end)
        {
            long chunkIndex = sector >> ChunkSectorsShift;
            ulong[] chunk = Volatile.Read(ref _chunks[chunkIndex]) ?? Allocate(chunkIndex);
            int bit = (int)(sector & (ChunkSectors - 1));
            int count = (int)Math.Min(end - sector, 64 - (bit & 63));
            ulong mask = count == 64 ? ulong.MaxValue : ((1UL << count) - 1) << (bit & 63);

            // Interlocked: concurrent changes set bits of the same word.
            Interlocked.Or(ref chunk[bit >> 6], mask);
            sector += count;
        }
    }

    /// <summary>
    /// How many sectors from <paramref name="sector"/> (at most <paramref name="maxSectors"/>) share its state, and
    /// whether they are redirected.
    /// </summary>
    public long Run(long sector, long maxSectors, out bool redirected)
    {
        redirected = IsMarked(sector);
        long run = 1;
        while (run < maxSectors && IsMarked(sector + run) == redirected)
        {
            run++;
        }

        return run;
    }

    public bool IsMarked(long sector)
    {
        // Acquire: pairs with the Interlocked.Or (and the chunk's CompareExchange) that published the bit.
        ulong[]? chunk = Volatile.Read(ref _chunks[sector >> ChunkSectorsShift]);
        if (chunk is null)
        {
            return false;
        }

        int bit = (int)(sector & (ChunkSectors - 1));
        return (Volatile.Read(ref chunk[bit >> 6]) & (1UL << (bit & 63))) != 0;
    }

    private ulong[] Allocate(long chunkIndex)
    {
        var created = new ulong[WordsPerChunk];
        return Interlocked.CompareExchange(ref _chunks[chunkIndex], created, null) ?? created;
    }
}
