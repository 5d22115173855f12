using System.Globalization;

namespace Tapdisk.Filters.Cache;

/// <summary>
/// The process-wide shared parent cache (blktap's "bc" role): 16 KiB granules of read-only parent chains, held
/// LZ4-compressed (raw when a granule does not compress by an eighth) in one memory budget for the whole tapdisk.
/// VBDs whose parent chain is the same files in the same state share one <see cref="ParentCacheSet"/>.
/// Eviction is 2Q with CLOCK for its main queue: new granules enter a FIFO probation queue (a quarter of the budget);
/// one that is hit again before it leaves is promoted to the protected CLOCK, whose entries carry a 2-bit use count
/// that hits raise and the sweeping hand lowers. A boot working set (granules every VM reads, and reads again) is thus
/// protected, while a one-pass scan (a backup, a file read once) only cycles through probation and never ages it, as
/// plain LRU or CLOCK would. CLOCK rather than an LRU list because a hit is then a plain store of a counter: no lock
/// and no list relinking on the many io_uring loop threads that serve hits.
/// </summary>
public sealed class ParentCache
{
    /// <summary>The environment variable with the budget in MiB (README): unset, ADD_CACHE VBDs only; 0, off.</summary>
    public const string BudgetVariable = "TAPDISK_PARENT_CACHE_MB";

    public const int DefaultBudgetMiB = 256;

    /// <summary>
    /// 16 KiB granules: an LZ4 block decodes from its start, so a 4 KiB hit decodes its granule up to the piece's end
    /// (a partial decode, on average 10 KiB of 16); at 64 KiB that decode was most of a hit's CPU (bench/RESULTS.md),
    /// while 16 KiB blocks compress file-system data nearly as well.
    /// </summary>
    public const int GranuleShift = 14;

    public const int GranuleBytes = 1 << GranuleShift;

    /// <summary>Bytes an entry costs besides its data: the entry object, its array header and its dictionary node.</summary>
    public const int EntryOverheadBytes = 128;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, ParentCacheSet> _sets = new(StringComparer.Ordinal);
    private CacheEntry?[] _clock = new CacheEntry?[1024];
    private readonly Stack<int> _freeSlots = new();
    private readonly Queue<CacheEntry> _probation = new();
    private long _probationBytes;
    private int _protectedCount;
    private int _clockUsed;
    private int _hand;
    private long _storedBytes;
    private long _rawBytes;
    private long _entries;
    private long _evictions;

    public ParentCache(long budgetBytes, bool forEveryVbd = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budgetBytes);
        BudgetBytes = budgetBytes;
        ForEveryVbd = forEveryVbd;
    }

    public long BudgetBytes { get; }

    /// <summary>Whether every VBD with a parent uses it (the budget was set), or only those opened with ADD_CACHE.</summary>
    public bool ForEveryVbd { get; }

    /// <summary>Bytes held, entry overhead included: what the budget bounds.</summary>
    public long StoredBytes => Interlocked.Read(ref _storedBytes);

    /// <summary>Uncompressed bytes of the granules held.</summary>
    public long RawBytes => Interlocked.Read(ref _rawBytes);

    public long Entries => Interlocked.Read(ref _entries);

    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Sets currently known (in use, or idle and still holding entries).</summary>
    public int Sets
    {
        get
        {
            lock (_lock)
            {
                return _sets.Count;
            }
        }
    }

    /// <summary>
    /// The process's cache as <see cref="BudgetVariable"/> sets it: unset or empty, a cache of the default budget for
    /// ADD_CACHE VBDs; a positive number of MiB, a cache of that budget for every VBD with a parent; 0, none (null).
    /// </summary>
    public static ParentCache? FromEnvironment(string? value, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(value))
        {
            return new ParentCache((long)DefaultBudgetMiB << 20);
        }

        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long mib) || mib > (1L << 30))
        {
            error = $"{BudgetVariable}={value} is not a number of MiB; using the default of {DefaultBudgetMiB} MiB for ADD_CACHE VBDs only";
            return new ParentCache((long)DefaultBudgetMiB << 20);
        }

        return mib == 0 ? null : new ParentCache(mib << 20, forEveryVbd: true);
    }

    /// <summary>
    /// The set for a parent chain in the state <paramref name="identity"/> describes (file ids, sizes, mtimes, ctimes of
    /// every layer). Sets of the same top file (<paramref name="fileKey"/>) in an older state are dropped now, or when
    /// their last user lets go: a parent changed while its VBDs were paused is never served from the old entries.
    /// </summary>
    public ParentCacheSet Acquire(string fileKey, string identity)
    {
        lock (_lock)
        {
            foreach (ParentCacheSet old in _sets.Values.Where(s => s.FileKey == fileKey && s.Identity != identity).ToList())
            {
                old.Stale = true;
                if (old.References == 0)
                {
                    DropLocked(old);
                }
            }

            if (!_sets.TryGetValue(identity, out ParentCacheSet? set))
            {
                set = new ParentCacheSet(this, fileKey, identity);
                _sets.Add(identity, set);
            }

            set.References++;
            return set;
        }
    }

    internal void Release(ParentCacheSet set)
    {
        lock (_lock)
        {
            if (--set.References == 0 && set.Stale)
            {
                DropLocked(set);
            }
        }
    }

    /// <summary>Adds an entry (if it fits the budget at all), evicting others until it fits.</summary>
    internal bool Insert(ParentCacheSet set, long granule, CacheEntry entry)
    {
        long cost = entry.Data.Length + EntryOverheadBytes;
        if (cost > BudgetBytes)
        {
            return false;
        }

        lock (_lock)
        {
            if (set.Dropped || !set.Entries.TryAdd(granule, entry))
            {
                return false;
            }

            while (_storedBytes + cost > BudgetBytes && (_probation.Count > 0 || _protectedCount > 0))
            {
                EvictOneLocked();
            }

            entry.Set = set;
            entry.Granule = granule;
            entry.Slot = -1;
            _probation.Enqueue(entry);
            _probationBytes += cost;
            Interlocked.Add(ref _storedBytes, cost);
            Interlocked.Add(ref _rawBytes, entry.RawLength);
            Interlocked.Increment(ref _entries);
            set.AddCounts(cost, entry.RawLength, 1);
            return true;
        }
    }

    private void EvictOneLocked()
    {
        while (_probation.Count > 0 && (_probationBytes > BudgetBytes / 4 || _protectedCount == 0))
        {
            CacheEntry entry = _probation.Dequeue();
            if (entry.Removed)
            {
                continue;
            }

            if (Volatile.Read(ref entry.Uses) > 0)
            {
                _probationBytes -= Cost(entry);
                Protect(entry);
                continue;
            }

            // Still counted in probation: RemoveLocked takes it off.
            RemoveLocked(entry);
            Interlocked.Increment(ref _evictions);
            return;
        }

        // Bounded: each pass lowers every count by one, so within four passes some entry reaches zero.
        for (int steps = 0; steps < _clockUsed * (CacheEntry.MaxUses + 2); steps++)
        {
            _hand = (_hand + 1) % _clockUsed;
            CacheEntry? entry = _clock[_hand];
            if (entry is null)
            {
                continue;
            }

            int uses = Volatile.Read(ref entry.Uses);
            if (uses > 0)
            {
                Volatile.Write(ref entry.Uses, uses - 1);
                continue;
            }

            RemoveLocked(entry);
            Interlocked.Increment(ref _evictions);
            return;
        }
    }

    private static long Cost(CacheEntry entry) => entry.Data.Length + EntryOverheadBytes;

    /// <summary>Moves a re-read granule from probation into the CLOCK.</summary>
    private void Protect(CacheEntry entry)
    {
        int slot;
        if (_freeSlots.Count > 0)
        {
            slot = _freeSlots.Pop();
        }
        else
        {
            if (_clockUsed == _clock.Length)
            {
                Array.Resize(ref _clock, _clock.Length * 2);
            }

            slot = _clockUsed++;
        }

        _clock[slot] = entry;
        entry.Slot = slot;
        _protectedCount++;
    }

    private void RemoveLocked(CacheEntry entry)
    {
        ParentCacheSet set = entry.Set!;
        set.Entries.TryRemove(new KeyValuePair<long, CacheEntry>(entry.Granule, entry));
        long cost = Cost(entry);
        if (entry.Slot >= 0)
        {
            _clock[entry.Slot] = null;
            _freeSlots.Push(entry.Slot);
            _protectedCount--;
        }
        else if (!entry.Removed)
        {
            // Still queued in probation: skipped when it reaches the head.
            _probationBytes -= cost;
        }

        entry.Removed = true;
        Interlocked.Add(ref _storedBytes, -cost);
        Interlocked.Add(ref _rawBytes, -entry.RawLength);
        Interlocked.Decrement(ref _entries);
        set.AddCounts(-cost, -entry.RawLength, -1);
    }

    private void DropLocked(ParentCacheSet set)
    {
        set.Dropped = true;
        foreach (CacheEntry entry in set.Entries.Values)
        {
            RemoveLocked(entry);
        }

        _sets.Remove(set.Identity);
    }
}
