using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using K4os.Compression.LZ4;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cache;

/// <summary>
/// blktap's "bc" layer (ADD_CACHE, control-xen.md 7.1 type 7): between a leaf and its read-only parent, it answers the
/// parent's reads from the process-wide <see cref="ParentCache"/>, so VBDs over one golden image read each granule from
/// its file once. A hit decodes straight into the request's buffer (into a thread's scratch granule, only up to the
/// piece's end, when the request covers part of one further in) and allocates nothing; a miss reads the whole 16 KiB granule from the parent and stores it.
/// </summary>
public sealed class BlockCacheFilter : BlockFilter, IBlockImage
{
    public const string Name = "bc";

    [ThreadStatic]
    private static byte[]? s_scratch;

    private readonly ParentCacheSet _set;
    private readonly LayerCounters _counters = new();
    private long _hits;
    private long _misses;
    private long _hitBytes;
    private long _hotHits;
    private int _released;

    private BlockCacheFilter(IBlockImage parent, ParentCacheSet set)
        : base(parent)
    {
        _set = set;
    }

    public override string DriverName => Name;

    /// <summary>The set this layer shares with the other VBDs over the same parent chain.</summary>
    public ParentCacheSet Set => _set;

    /// <summary>This VBD's granule lookups answered from memory.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Hits on compressed granules answered from the hot tier's decoded copy, without a decode.</summary>
    public long HotHits => Interlocked.Read(ref _hotHits);

    /// <summary>Bytes this VBD read from memory instead of the parent's files.</summary>
    public long HitBytes => Interlocked.Read(ref _hitBytes);

    /// <summary>Sectors served from the cache count on this layer, as blktap counts reads on the image that served them.</summary>
    LayerCounters? IBlockImage.Counters => _counters;

    /// <summary>
    /// Wraps a read-only parent chain in the cache, sharing the set of any VBD over the same files in the same state
    /// (device, inode, size, mtime and ctime of every layer; ctime because the kernel sets it on every change and no
    /// tool can set it back, so a coalesce or modify between pause and resume always yields a new identity).
    /// </summary>
    public static BlockCacheFilter Open(IBlockImage parent, ParentCache cache)
    {
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(cache);
        string fileKey = string.Empty;
        var identity = new StringBuilder();
        for (IBlockImage? layer = parent; layer is not null; layer = layer.Parent)
        {
            if (layer.Kind != LayerKind.Image)
            {
                continue;
            }

            FileStatus status = StatPath(layer.Path);
            string id = string.Create(CultureInfo.InvariantCulture, $"{status.Device}:{status.Inode}");
            fileKey = fileKey.Length == 0 ? id : fileKey;
            identity.Append(CultureInfo.InvariantCulture, $"{layer.DriverName}:{id}:{status.Size}:{status.ModifiedNs}:{status.ChangedNs}|");
        }

        return new BlockCacheFilter(parent, cache.Acquire(fileKey, identity.ToString()));
    }

    private static FileStatus StatPath(string path)
    {
        int errno = PosixFile.TryOpen(path, OpenFlags.ReadOnly, 0, out SafeFdHandle fd);
        using (fd)
        {
            if (errno != 0)
            {
                throw new ImageOpenException(path, errno, $"cannot stat the parent for the block cache: {Errno.Describe(errno)}");
            }

            return PosixFile.Stat(fd, path);
        }
    }

    /// <summary>
    /// A read whose every granule is held never blocks, whatever the parent's files would need (a VHD whose bitmap is not
    /// loaded says it may): it runs on the caller's io_uring loop thread with no hop to the I/O workers. Otherwise the
    /// parent's answer for the granules a miss reads whole.
    /// </summary>
    public override bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes)
    {
        if (operation != BlockOperation.Read || lengthBytes <= 0)
        {
            return Next.MayBlock(operation, offsetBytes, lengthBytes);
        }

        // The parent first: when it cannot block either (the usual answer once its metadata is loaded), that costs no
        // dictionary lookups, which miss the CPU cache on a large set.
        long first = offsetBytes >> ParentCache.GranuleShift;
        long last = (offsetBytes + lengthBytes - 1) >> ParentCache.GranuleShift;
        long start = first << ParentCache.GranuleShift;
        if (!Next.MayBlock(operation, start, Math.Min((last + 1) << ParentCache.GranuleShift, Next.SizeBytes) - start))
        {
            return false;
        }

        for (long granule = first; granule <= last; granule++)
        {
            if (!_set.Entries.ContainsKey(granule))
            {
                return true;
            }
        }

        return false;
    }

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        while (!destination.IsEmpty)
        {
            long granule = offsetBytes >> ParentCache.GranuleShift;
            int within = (int)(offsetBytes & (ParentCache.GranuleBytes - 1));
            int pieceBytes = Math.Min(destination.Length, ParentCache.GranuleBytes - within);
            if (!_set.Entries.TryGetValue(granule, out CacheEntry? entry) || !TryCopy(entry, within, destination.Span[..pieceBytes]))
            {
                return ReadMissesAsync(offsetBytes, destination, cancellationToken);
            }

            Hit(entry, pieceBytes);
            offsetBytes += pieceBytes;
            destination = destination[pieceBytes..];
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Decodes <paramref name="entry"/>'s bytes [within, within + length) into <paramref name="target"/>.</summary>
    internal static bool TryCopy(CacheEntry entry, int within, Span<byte> target)
    {
        int end = within + target.Length;
        if (end > entry.RawLength)
        {
            return false;
        }

        if (!entry.Compressed)
        {
            entry.Data.AsSpan(within, target.Length).CopyTo(target);
            return true;
        }

        // Acquire: pairs with the release in ParentCache.Promote, so the array is seen filled.
        byte[]? hot = Volatile.Read(ref entry.Hot);
        if (hot is not null)
        {
            hot.AsSpan(within, target.Length).CopyTo(target);
            if (Volatile.Read(ref entry.HotUsed) == 0)
            {
                // Stored only when clear, so hits on a hot granule from many threads do not share a dirty cache line.
                Volatile.Write(ref entry.HotUsed, 1);
            }

            return true;
        }

        // An LZ4 block decodes from its start, but may stop anywhere: a partial decode (LZ4_decompress_safe_partial)
        // produces only the granule's first `end` bytes, so a hit on its first 4 KiB decodes a quarter of it.
        if (within == 0)
        {
            int length = target.Length == entry.RawLength
                ? LZ4Codec.Decode(entry.Data, target)
                : LZ4Codec.PartialDecode(entry.Data, target);
            return length == target.Length;
        }

        // Further in: the bytes before `within` are the history its matches copy from, so into the thread's scratch
        // granule up to `end`, then copy the piece.
        byte[] scratch = s_scratch ??= GC.AllocateUninitializedArray<byte>(ParentCache.GranuleBytes);
        Span<byte> prefix = scratch.AsSpan(0, end);
        int decoded = end == entry.RawLength ? LZ4Codec.Decode(entry.Data, prefix) : LZ4Codec.PartialDecode(entry.Data, prefix);
        if (decoded != end)
        {
            return false;
        }

        scratch.AsSpan(within, target.Length).CopyTo(target);
        return true;
    }

    private void Hit(CacheEntry entry, int bytes)
    {
        entry.Touch();
        CountHit(bytes);
        if (!entry.Compressed)
        {
            return;
        }

        if (Volatile.Read(ref entry.Hot) is not null)
        {
            Interlocked.Increment(ref _hotHits);
        }
        else
        {
            // A relaxed count, as Touch's: a lost increment only delays a promotion.
            int decodedHits = Volatile.Read(ref entry.DecodedHits) + 1;
            Volatile.Write(ref entry.DecodedHits, decodedHits);
            if ((decodedHits & (ParentCache.PromoteAfterHits - 1)) == 0 && _set.Cache.MayPromote(entry))
            {
                Promote(entry);
            }
        }
    }

    /// <summary>Copies a granule hit often into the hot tier: one array and one full decode per promotion, not per hit.</summary>
    private void Promote(CacheEntry entry)
    {
        byte[] decoded = GC.AllocateUninitializedArray<byte>(entry.RawLength);
        if (LZ4Codec.Decode(entry.Data, decoded) == entry.RawLength)
        {
            _set.Cache.Promote(entry, decoded);
        }
    }

    private void CountHit(int bytes)
    {
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _hitBytes, bytes);
        _set.CountHit();
        _counters.CountRead(bytes);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadMissesAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            long granule = offsetBytes >> ParentCache.GranuleShift;
            int within = (int)(offsetBytes & (ParentCache.GranuleBytes - 1));
            int pieceBytes = Math.Min(destination.Length, ParentCache.GranuleBytes - within);
            if (_set.Entries.TryGetValue(granule, out CacheEntry? entry) && TryCopy(entry, within, destination.Span[..pieceBytes]))
            {
                Hit(entry, pieceBytes);
            }
            else
            {
                await FillAsync(granule, within, destination[..pieceBytes], cancellationToken).ConfigureAwait(false);
            }

            offsetBytes += pieceBytes;
            destination = destination[pieceBytes..];
        }
    }

    /// <summary>Reads the whole granule from the parent, answers the request from it, and stores it.</summary>
    private async ValueTask FillAsync(long granule, int within, Memory<byte> piece, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _misses);
        _set.CountMiss();
        long start = granule << ParentCache.GranuleShift;
        int rawLength = (int)Math.Min(ParentCache.GranuleBytes, Next.SizeBytes - start);
        if (within == 0 && piece.Length == rawLength)
        {
            // The request is the granule: read into it, store from it.
            await Next.ReadAsync(start, piece, cancellationToken).ConfigureAwait(false);
            Store(granule, piece.Span);
            return;
        }

        // Page-aligned, so an O_DIRECT parent reads into it through the loop's ring; a managed array would be bounced
        // with a blocking pread on the loop thread, which MayBlock promised not to block.
        AlignedMemory buffer = AlignedBufferPool.Shared.Rent(rawLength);
        try
        {
            await Next.ReadAsync(start, buffer.Memory[..rawLength], cancellationToken).ConfigureAwait(false);
            buffer.GetSpan().Slice(within, piece.Length).CopyTo(piece.Span);
            Store(granule, buffer.GetSpan()[..rawLength]);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(buffer);
        }
    }

    private void Store(long granule, ReadOnlySpan<byte> raw)
    {
        if (_set.Entries.ContainsKey(granule))
        {
            return;
        }

        CacheEntry entry = Compress(raw);
        _set.Cache.Insert(_set, granule, entry);
    }

    /// <summary>LZ4 (fast mode) if it saves at least an eighth; else the raw bytes (incompressible data costs no decode).</summary>
    internal static CacheEntry Compress(ReadOnlySpan<byte> raw)
    {
        byte[] target = ArrayPool<byte>.Shared.Rent(LZ4Codec.MaximumOutputSize(raw.Length));
        try
        {
            int encoded = LZ4Codec.Encode(raw, target, LZ4Level.L00_FAST);
            return encoded > 0 && encoded <= raw.Length - (raw.Length / 8)
                ? new CacheEntry(target.AsSpan(0, encoded).ToArray(), raw.Length, compressed: true)
                : new CacheEntry(raw.ToArray(), raw.Length, compressed: false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(target);
        }
    }

    private void ReleaseSet()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            _set.Release();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ReleaseSet();
        }

        base.Dispose(disposing);
    }

    protected override ValueTask DisposeCoreAsync()
    {
        ReleaseSet();
        return base.DisposeCoreAsync();
    }
}
