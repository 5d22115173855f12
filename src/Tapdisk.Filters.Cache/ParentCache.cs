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
/// and no list relinking on the many io_uring loop threads that serve hits. A small hot tier (<see cref="HotShare"/>)
/// keeps decoded copies of granules hit often, with a CLOCK of its own, so their hits cost a copy and no decode.
/// </summary>
public sealed class ParentCache
{
    /// <summary>The environment variable with the budget in MiB (README): unset, ADD_CACHE VBDs only; 0, off.</summary>
    public const string BudgetVariable = "TAPDISK_PARENT_CACHE_MB";

    /// <summary>The environment variable that turns the hot tier off when "0" (README; for measuring without it).</summary>
    public const string HotTierVariable = "TAPDISK_PARENT_CACHE_HOT";

    public const int DefaultBudgetMiB = 256;

    /// <summary>
    /// 16 KiB granules: an LZ4 block decodes from its start, so a 4 KiB hit decodes its granule up to the piece's end
    /// (a partial decode, on average 10 KiB of 16) unless the granule is hot; at 64 KiB that decode was most of a hit's
    /// CPU, while 16 KiB blocks compress file-system data nearly as well. 8 KiB, with the hot tier, cost as much CPU
    /// per request and compressed worse (bench/RESULTS.md).
    /// </summary>
    public const int GranuleShift = 14;

    public const int GranuleBytes = 1 << GranuleShift;

    /// <summary>Bytes an entry costs besides its data: the entry object, its array header and its dictionary node.</summary>
    public const int EntryOverheadBytes = 128;

    /// <summary>
    /// The hot tier holds at most this fraction (1/8) of the budget, and of the raw bytes held, as decoded copies of
    /// granules hit often: a hit there is a copy, no decode. The copies count in <see cref="StoredBytes"/>, on top of
    /// the compressed entries, so the tier also grows only while stored bytes stay within <see cref="HotStoredPercent"/>
    /// of the raw bytes held: it spends memory that compression saved, never more.
    /// </summary>
    public const int HotShare = 8;

    /// <summary>Stored bytes, hot copies included, that the hot tier may grow to, in percent of the raw bytes held.</summary>
    public const int HotStoredPercent = 60;

    /// <summary>Hits that decode a granule before it is copied into the hot tier (a power of two: retried as often).</summary>
    public const int PromoteAfterHits = 8;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, ParentCacheSet> _sets = new(StringComparer.Ordinal);
    private CacheEntry?[] _clock = new CacheEntry?[1024];
    private readonly Stack<int> _freeSlots = new();
    private readonly Queue<CacheEntry> _probation = new();
    private long _probationBytes;
    private int _protectedCount;
    private int _clockUsed;
    private int _hand;
    private CacheEntry?[] _hot = new CacheEntry?[64];
    private readonly Stack<int> _freeHotSlots = new();
    private int _hotUsed;
    private int _hotHand;
    private long _hotBytes;
    private long _storedBytes;
    private long _rawBytes;
    private long _entries;
    private long _evictions;

    public ParentCache(long budgetBytes, bool forEveryVbd = false, bool hotTier = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budgetBytes);
        BudgetBytes = budgetBytes;
        ForEveryVbd = forEveryVbd;
        HotTier = hotTier;
    }

    public long BudgetBytes { get; }

    /// <summary>Whether granules hit often get a decoded copy (<see cref="HotShare"/>); off only to measure without it.</summary>
    public bool HotTier { get; }

    /// <summary>Whether every VBD with a parent uses it (the budget was set), or only those opened with ADD_CACHE.</summary>
    public bool ForEveryVbd { get; }

    /// <summary>Bytes held, entry overhead included: what the budget bounds.</summary>
    public long StoredBytes => Interlocked.Read(ref _storedBytes);

    /// <summary>Uncompressed bytes of the granules held.</summary>
    public long RawBytes => Interlocked.Read(ref _rawBytes);

    public long Entries => Interlocked.Read(ref _entries);

    /// <summary>Decoded bytes of the hot tier (part of <see cref="StoredBytes"/>).</summary>
    public long HotBytes => Interlocked.Read(ref _hotBytes);

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
    /// <paramref name="hotValue"/> (<see cref="HotTierVariable"/>) "0" turns the hot tier off.
    /// </summary>
    public static ParentCache? FromEnvironment(string? value, out string? error, string? hotValue = null)
    {
        error = null;
        bool hotTier = hotValue?.Trim() != "0";
        if (string.IsNullOrWhiteSpace(value))
        {
            return new ParentCache((long)DefaultBudgetMiB << 20, hotTier: hotTier);
        }

        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long mib) || mib > (1L << 30))
        {
            error = $"{BudgetVariable}={value} is not a number of MiB; using the default of {DefaultBudgetMiB} MiB for ADD_CACHE VBDs only";
            return new ParentCache((long)DefaultBudgetMiB << 20, hotTier: hotTier);
        }

        return mib == 0 ? null : new ParentCache(mib << 20, forEveryVbd: true, hotTier: hotTier);
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
        int slot = TakeSlot(_freeSlots, ref _clock, ref _clockUsed);
        _clock[slot] = entry;
        entry.Slot = slot;
        _protectedCount++;
    }

    /// <summary>A free slot of a CLOCK's array (one given back, else the next unused, growing the array).</summary>
    private static int TakeSlot(Stack<int> free, ref CacheEntry?[] slots, ref int used)
    {
        if (free.Count > 0)
        {
            return free.Pop();
        }

        if (used == slots.Length)
        {
            Array.Resize(ref slots, slots.Length * 2);
        }

        return used++;
    }

    /// <summary>Whether the hot tier could take the entry now (checked before a hit decodes a copy for it).</summary>
    internal bool MayPromote(CacheEntry entry) => HotTier && entry.RawLength <= HotCap(RawBytes, StoredBytes, HotBytes);

    /// <summary>The hot tier's bound (<see cref="HotShare"/>, <see cref="HotStoredPercent"/>) given the cache's counts.</summary>
    private long HotCap(long rawBytes, long storedBytes, long hotBytes) =>
        Math.Min(Math.Min(BudgetBytes, rawBytes) / HotShare, Math.Max(0, (rawBytes * HotStoredPercent / 100) - (storedBytes - hotBytes)));

    /// <summary>
    /// Adds <paramref name="decoded"/> (the entry's granule, decoded by a hit) as its hot copy, making room by demoting
    /// the hot entries least used since the hot tier's hand last passed (CLOCK), then by evicting, as an insert does.
    /// </summary>
    internal void Promote(CacheEntry entry, byte[] decoded)
    {
        int raw = entry.RawLength;
        lock (_lock)
        {
            long cap = HotCap(_rawBytes, _storedBytes, _hotBytes);
            if (!HotTier || entry.Removed || entry.HotSlot >= 0 || raw > cap)
            {
                return;
            }

            while (_hotBytes + raw > cap && DemoteOneLocked())
            {
            }

            while (_storedBytes + raw > BudgetBytes && (_probation.Count > 0 || _protectedCount > 0))
            {
                EvictOneLocked();
            }

            if (entry.Removed || _hotBytes + raw > cap || _storedBytes + raw > BudgetBytes)
            {
                return;
            }

            int slot = TakeSlot(_freeHotSlots, ref _hot, ref _hotUsed);
            _hot[slot] = entry;
            entry.HotSlot = slot;
            Interlocked.Add(ref _hotBytes, raw);
            Interlocked.Add(ref _storedBytes, raw);
            entry.Set!.AddCounts(raw, 0, 0);

            // Release: a hit that sees the array sees it filled.
            Volatile.Write(ref entry.Hot, decoded);
        }
    }

    /// <summary>Demotes the first hot entry not hit since the hand last passed it; false when the tier is empty.</summary>
    private bool DemoteOneLocked()
    {
        // Bounded: the first pass clears every bit, so the second finds an entry.
        for (int steps = 0; steps < 2 * _hotUsed; steps++)
        {
            _hotHand = (_hotHand + 1) % _hotUsed;
            CacheEntry? entry = _hot[_hotHand];
            if (entry is null)
            {
                continue;
            }

            if (Volatile.Read(ref entry.HotUsed) != 0)
            {
                Volatile.Write(ref entry.HotUsed, 0);
                continue;
            }

            DemoteLocked(entry);
            return true;
        }

        return false;
    }

    /// <summary>
    /// Drops an entry's hot copy; the compressed bytes still serve it. A hit copying from the array now keeps it alive
    /// and reads the same bytes: arrays are never reused, so no reader can see another granule's.
    /// </summary>
    private void DemoteLocked(CacheEntry entry)
    {
        Volatile.Write(ref entry.Hot, null);
        _hot[entry.HotSlot] = null;
        _freeHotSlots.Push(entry.HotSlot);
        entry.HotSlot = -1;
        entry.HotUsed = 0;
        entry.DecodedHits = 0;
        Interlocked.Add(ref _hotBytes, -entry.RawLength);
        Interlocked.Add(ref _storedBytes, -entry.RawLength);
        entry.Set!.AddCounts(-entry.RawLength, 0, 0);
    }

    private void RemoveLocked(CacheEntry entry)
    {
        ParentCacheSet set = entry.Set!;
        if (entry.HotSlot >= 0)
        {
            DemoteLocked(entry);
        }

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
