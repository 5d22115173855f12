using System.Collections.Concurrent;

namespace Tapdisk.Filters.Cache;

/// <summary>The cached granules of one parent chain in one state, shared by every VBD over it.</summary>
public sealed class ParentCacheSet
{
    private long _storedBytes;
    private long _rawBytes;
    private long _entries;
    private long _hits;
    private long _misses;

    internal ParentCacheSet(ParentCache cache, string fileKey, string identity)
    {
        Cache = cache;
        FileKey = fileKey;
        Identity = identity;
    }

    public ParentCache Cache { get; }

    /// <summary>The top parent file's device and inode.</summary>
    public string FileKey { get; }

    /// <summary>Device, inode, size, mtime and ctime of every layer of the chain.</summary>
    public string Identity { get; }

    /// <summary>VBD layers using the set now (under the cache's lock).</summary>
    public int References { get; internal set; }

    public long StoredBytes => Interlocked.Read(ref _storedBytes);

    public long RawBytes => Interlocked.Read(ref _rawBytes);

    public long EntryCount => Interlocked.Read(ref _entries);

    /// <summary>Granule lookups answered from memory, over every VBD that used the set.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    internal ConcurrentDictionary<long, CacheEntry> Entries { get; } = new();

    /// <summary>The files changed since the set was made: no new user gets it; it goes when its last user does.</summary>
    internal bool Stale { get; set; }

    internal bool Dropped { get; set; }

    internal void CountHit() => Interlocked.Increment(ref _hits);

    internal void CountMiss() => Interlocked.Increment(ref _misses);

    internal void AddCounts(long storedBytes, long rawBytes, long entries)
    {
        Interlocked.Add(ref _storedBytes, storedBytes);
        Interlocked.Add(ref _rawBytes, rawBytes);
        Interlocked.Add(ref _entries, entries);
    }

    /// <summary>Lets go of the set (a VBD's bc layer closing).</summary>
    public void Release() => Cache.Release(this);
}
