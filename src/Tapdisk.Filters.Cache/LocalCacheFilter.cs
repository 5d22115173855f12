using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cache;

/// <summary>
/// blktap's "lc" (IntelliCache, tap-ctl -r, data-plane.md 7.2): a read the local leaf does not hold is served from the
/// shared parent as usual, and the sectors the leaf lacked are then written into the leaf (a write-back, not a guest
/// write: no guest counters, no CBT bit, since this filter sits under the log), so later reads stay local. What the
/// guest reads never changes: only parent data goes into sectors the leaf does not hold.
/// It sits above the leaf rather than between the leaf and its parent (control-xen.md: "above the leaf") because it
/// must see every guest write to order write-backs against them: a write-back is attempted only if no guest write,
/// trim or zero touched its 64 KiB stripes from before the read until the write-back itself, and guest writes that
/// arrive while one runs wait for it. So an older parent fill never lands over a newer guest write.
/// Crash safety: a write-back is an ordinary leaf write of data identical to what the sectors read as already (the
/// parent's), so a crash at any point leaves the guest-visible content unchanged.
/// Write-back stops while the leaf's file system has under 2 MiB free (statvfs, once a second) and for good after an
/// ENOSPC, as blktap does; at most 64 write-backs are outstanding (blktap's bound), more misses are just not cached.
/// </summary>
public sealed class LocalCacheFilter : BlockFilter
{
    public const string Name = "lc";

    /// <summary>blktap stops write-back below this much free space on the cache's file system.</summary>
    public const long MinFreeBytes = 2 * 1024 * 1024;

    /// <summary>blktap's bound on outstanding write-backs.</summary>
    public const int MaxWriteBacks = 64;

    private const int StripeShift = 16;
    private const int StripeCount = 4096;
    private const long SpaceCheckIntervalMs = 1000;

    /// <summary>What one write-back may cost the file system at worst: a new 2 MiB VHD block and its bitmap sector.</summary>
    private const long WorstCaseAllocationBytes = (2 * 1024 * 1024) + 4096;

    [ThreadStatic]
    private static ExtentList? s_extents;

    private readonly long[] _generation = new long[StripeCount];
    private readonly int[] _writers = new int[StripeCount];
    private readonly WriteBack?[] _writeBacks = new WriteBack?[StripeCount];
    private readonly SemaphoreSlim _slots = new(MaxWriteBacks, MaxWriteBacks);
    private readonly Func<long> _freeBytes;
    private readonly ILogger _logger;
    private long _nextSpaceCheck;
    private long _spaceBudget;
    private long _pendingCharge;
    private int _spaceLow;
    private int _enospc;
    private int _closing;
    private long _writtenBackBytes;
    private long _completedWriteBacks;
    private long _abandoned;

    /// <summary>Wraps <paramref name="leaf"/>; <paramref name="freeBytes"/> reports the free bytes of its file system.</summary>
    public LocalCacheFilter(IBlockImage leaf, Func<long> freeBytes, ILogger? logger = null)
        : base(leaf)
    {
        ArgumentNullException.ThrowIfNull(freeBytes);
        _freeBytes = freeBytes;
        _logger = logger ?? NullLogger.Instance;
    }

    public override string DriverName => Name;

    /// <summary>Bytes written back into the leaf so far.</summary>
    public long WrittenBackBytes => Interlocked.Read(ref _writtenBackBytes);

    /// <summary>Write-backs that completed (each may write several runs).</summary>
    public long WriteBacks => Interlocked.Read(ref _completedWriteBacks);

    /// <summary>Write-backs given up because a guest write raced them, or another write-back held their stripes.</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    /// <summary>Write-back stopped for this open after an ENOSPC.</summary>
    public bool StoppedOnEnospc => Volatile.Read(ref _enospc) != 0;

    /// <summary>Write-back paused: at the last look, one more write-back could have taken the file system under 2 MiB free.</summary>
    public bool SpaceLow => Volatile.Read(ref _spaceLow) != 0;

    /// <summary>Whether write-back is on now (off while space is low, and for good after ENOSPC).</summary>
    public bool WriteBackEnabled => Volatile.Read(ref _enospc) == 0 && Volatile.Read(ref _spaceLow) == 0;

    /// <summary>
    /// The "lc" layer for a VBD: inserted only over a writable image with a parent (blktap inserts it only when the
    /// chain has more than one image); otherwise the image comes back unwrapped, and <paramref name="why"/> says why.
    /// </summary>
    public static IBlockImage Wrap(IBlockImage leaf, ILogger? logger, out string? why)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        why = leaf.Kind != LayerKind.Image ? "the leaf is a filter"
            : leaf.Parent is null ? "the chain has one image"
            : leaf.IsReadOnly ? "the leaf is read-only"
            : null;
        if (why is not null)
        {
            Log.NotInserted(logger ?? NullLogger.Instance, leaf.Path, why);
            return leaf;
        }

        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(leaf.Path)) ?? "/";
        return new LocalCacheFilter(leaf, () => new DriveInfo(directory).AvailableFreeSpace, logger);
    }

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        // Paused for low space is not off: misses still reach SpaceAllows, whose once-a-second look resumes write-back
        // when room comes back (blktap's timer does the same). After ENOSPC it is off for good.
        if (Volatile.Read(ref _enospc) != 0 || destination.IsEmpty)
        {
            return Next.ReadAsync(offsetBytes, destination, cancellationToken);
        }

        (long first, int count) = Stripes(offsetBytes, destination.Length);
        long generation = Snapshot(first, count);
        ValueTask read = Next.ReadAsync(offsetBytes, destination, cancellationToken);
        if (generation < 0)
        {
            return read;
        }

        if (!read.IsCompletedSuccessfully)
        {
            return ReadThenWriteBackAsync(read, offsetBytes, destination, first, count, generation);
        }

        read.GetAwaiter().GetResult();
        AfterRead(offsetBytes, destination, first, count, generation);
        return ValueTask.CompletedTask;
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        (long first, int count) = Stripes(offsetBytes, source.Length);
        WriteBack? running = EnterWrite(first, count);
        return running is null
            ? Completed(Next.WriteAsync(offsetBytes, source, flags, cancellationToken), first, count)
            : AfterWriteBackAsync(running, BlockOperation.Write, offsetBytes, source, source.Length, flags, ZeroFlags.None, first, count, cancellationToken);
    }

    public override ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        (long first, int count) = Stripes(offsetBytes, lengthBytes);
        WriteBack? running = EnterWrite(first, count);
        return running is null
            ? Completed(Next.TrimAsync(offsetBytes, lengthBytes, cancellationToken), first, count)
            : AfterWriteBackAsync(running, BlockOperation.Trim, offsetBytes, default, lengthBytes, WriteFlags.None, ZeroFlags.None, first, count, cancellationToken);
    }

    public override ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        (long first, int count) = Stripes(offsetBytes, lengthBytes);
        WriteBack? running = EnterWrite(first, count);
        return running is null
            ? Completed(Next.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken), first, count)
            : AfterWriteBackAsync(running, BlockOperation.Zero, offsetBytes, default, lengthBytes, WriteFlags.None, flags, first, count, cancellationToken);
    }

    /// <summary>Waits for every write-back still running (they write into the leaf, which must stay open for them).</summary>
    public async Task DrainAsync()
    {
        for (int i = 0; i < MaxWriteBacks; i++)
        {
            await _slots.WaitAsync().ConfigureAwait(false);
        }

        _slots.Release(MaxWriteBacks);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Volatile.Write(ref _closing, 1);
            for (int i = 0; i < MaxWriteBacks; i++)
            {
                _slots.Wait();
            }
        }

        base.Dispose(disposing);
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        Volatile.Write(ref _closing, 1);
        for (int i = 0; i < MaxWriteBacks; i++)
        {
            await _slots.WaitAsync().ConfigureAwait(false);
        }

        await base.DisposeCoreAsync().ConfigureAwait(false);
    }

    private static (long First, int Count) Stripes(long offsetBytes, long lengthBytes)
    {
        if (lengthBytes <= 0)
        {
            return (0, 0);
        }

        long first = offsetBytes >> StripeShift;
        long last = (offsetBytes + lengthBytes - 1) >> StripeShift;
        return (first, (int)Math.Min(last - first + 1, StripeCount));
    }

    private static int Index(long first, int i) => (int)((first + i) & (StripeCount - 1));

    /// <summary>
    /// The stripes' write generation before a read, or -1 if a guest write is in flight on them (its data may or may
    /// not be in what the read returns, so the read is not written back). Generation first, writers second: a write
    /// counts itself a writer before it bumps the generation, so one not yet counted here shows up as a new generation.
    /// </summary>
    private long Snapshot(long first, int count)
    {
        long sum = 0;
        for (int i = 0; i < count; i++)
        {
            sum += Volatile.Read(ref _generation[Index(first, i)]);
        }

        for (int i = 0; i < count; i++)
        {
            if (Volatile.Read(ref _writers[Index(first, i)]) != 0)
            {
                return -1;
            }
        }

        return sum;
    }

    /// <summary>Counts a guest write on its stripes; returns a write-back it must wait for, if one holds any of them.</summary>
    private WriteBack? EnterWrite(long first, int count)
    {
        for (int i = 0; i < count; i++)
        {
            int s = Index(first, i);
            Interlocked.Increment(ref _writers[s]);
            Interlocked.Increment(ref _generation[s]);
        }

        // The increments are full fences (Dekker with TryClaim's CompareExchange then writer check): either this write
        // sees the write-back's claim and waits for it, or the write-back sees this writer and gives up.
        return RunningOn(first, count);
    }

    private WriteBack? RunningOn(long first, int count)
    {
        for (int i = 0; i < count; i++)
        {
            if (Volatile.Read(ref _writeBacks[Index(first, i)]) is { } running)
            {
                return running;
            }
        }

        return null;
    }

    private void ExitWrite(long first, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Interlocked.Decrement(ref _writers[Index(first, i)]);
        }
    }

    private ValueTask Completed(ValueTask inner, long first, int count)
    {
        if (!inner.IsCompleted)
        {
            return ExitAfterAsync(inner, first, count);
        }

        try
        {
            inner.GetAwaiter().GetResult();
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e);
        }
        finally
        {
            ExitWrite(first, count);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ExitAfterAsync(ValueTask inner, long first, int count)
    {
        try
        {
            await inner.ConfigureAwait(false);
        }
        finally
        {
            ExitWrite(first, count);
        }
    }

    /// <summary>A guest write that found a write-back on its stripes: it goes after it (rare; allocation is fine here).</summary>
    private async ValueTask AfterWriteBackAsync(WriteBack running, BlockOperation operation, long offsetBytes, ReadOnlyMemory<byte> source, long lengthBytes, WriteFlags writeFlags, ZeroFlags zeroFlags, long first, int count, CancellationToken cancellationToken)
    {
        try
        {
            for (WriteBack? wait = running; wait is not null; wait = RunningOn(first, count))
            {
                await wait.Done.Task.ConfigureAwait(false);
            }

            ValueTask inner = operation switch
            {
                BlockOperation.Write => Next.WriteAsync(offsetBytes, source, writeFlags, cancellationToken),
                BlockOperation.Trim => Next.TrimAsync(offsetBytes, lengthBytes, cancellationToken),
                _ => Next.ZeroAsync(offsetBytes, lengthBytes, zeroFlags, cancellationToken),
            };
            await inner.ConfigureAwait(false);
        }
        finally
        {
            ExitWrite(first, count);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadThenWriteBackAsync(ValueTask read, long offsetBytes, Memory<byte> destination, long first, int count, long generation)
    {
        await read.ConfigureAwait(false);
        AfterRead(offsetBytes, destination, first, count, generation);
    }

    /// <summary>After a read: if the leaf lacked any of it, queue a write-back of a copy (the buffer goes back to the guest).</summary>
    private void AfterRead(long offsetBytes, Memory<byte> destination, long first, int count, long generation)
    {
        ExtentList own = s_extents ??= new ExtentList();
        own.Clear();
        try
        {
            ValueTask query = Next.GetOwnAllocationAsync(offsetBytes, destination.Length, own);
            if (!query.IsCompletedSuccessfully)
            {
                // The request path waits for no I/O of its own: a driver that cannot answer from memory gets no
                // write-back for this read (the VHD driver answers from its BAT and bitmaps).
                _ = query.AsTask().ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                return;
            }
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ObjectDisposedException)
        {
            return;
        }

        bool missed = false;
        foreach (ImageExtent extent in own.AsSpan())
        {
            missed |= (extent.Flags & ExtentFlags.Hole) != 0;
        }

        // An all-zero read is never written back (it reads the same from the parent at no data I/O): it must not use
        // up the room a write-back is charged either.
        if (!missed || Volatile.Read(ref _closing) != 0 || destination.Span.IndexOfAnyExcept((byte)0) < 0 || !SpaceAllows(destination.Length))
        {
            return;
        }

        if (!_slots.Wait(0))
        {
            Interlocked.Increment(ref _abandoned);
            return;
        }

        byte[] copy = ArrayPool<byte>.Shared.Rent(destination.Length);
        destination.Span.CopyTo(copy);
        Interlocked.Add(ref _pendingCharge, destination.Length + WorstCaseAllocationBytes);
        var writeBack = new WriteBack(offsetBytes, destination.Length, copy, first, count, generation);
        _ = Task.Run(() => RunWriteBackAsync(writeBack));
    }

    /// <summary>
    /// Whether the leaf's file system has room: statvfs at most once a second, as blktap's timer does, and also as soon
    /// as the write-backs queued since the last look could have used the room it showed above the 2 MiB floor (each is
    /// charged its length plus a whole new VHD block, the worst case), so a burst of misses cannot run the file system
    /// dry within blktap's one-second window and leave the guest's own writes to fail with ENOSPC.
    /// </summary>
    private bool SpaceAllows(int lengthBytes)
    {
        long now = Environment.TickCount64;
        long next = Volatile.Read(ref _nextSpaceCheck);
        long cost = lengthBytes + WorstCaseAllocationBytes;
        long left = Interlocked.Add(ref _spaceBudget, -cost);

        // Crossing zero forces a look; below it, only the clock does (no statvfs per miss while space is short).
        bool due = now >= next || (left < 0 && left + cost >= 0);
        if (due && Interlocked.CompareExchange(ref _nextSpaceCheck, now + SpaceCheckIntervalMs, next) == next)
        {
            long free;
            try
            {
                free = _freeBytes();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                free = 0;
            }

            // Low: this write-back, with those queued but not yet on disk (statvfs cannot see them), could take the
            // file system under the floor.
            long budget = free - MinFreeBytes - Interlocked.Read(ref _pendingCharge) - cost;
            bool low = budget < 0;
            Volatile.Write(ref _spaceBudget, budget);
            if (Interlocked.Exchange(ref _spaceLow, low ? 1 : 0) != (low ? 1 : 0))
            {
                Log.SpaceLow(_logger, Next.Path, low, free);
            }

            return WriteBackEnabled;
        }

        // Without a look of its own, a write-back goes only within the room the last look left (another thread may be
        // looking right now: going without this one is better than overshooting).
        return !due && left >= 0 && WriteBackEnabled;
    }

    private async Task RunWriteBackAsync(WriteBack writeBack)
    {
        try
        {
            if (!TryClaim(writeBack))
            {
                Interlocked.Increment(ref _abandoned);
                return;
            }

            try
            {
                await WriteHolesAsync(writeBack).ConfigureAwait(false);
            }
            finally
            {
                Release(writeBack);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(writeBack.Data);
            Interlocked.Add(ref _pendingCharge, -(writeBack.LengthBytes + WorstCaseAllocationBytes));
            _slots.Release();
        }
    }

    /// <summary>
    /// Takes the write-back's stripes, then checks no guest write is in flight on them and none ran since the read
    /// (same generation). Gives everything back and answers false otherwise.
    /// </summary>
    private bool TryClaim(WriteBack writeBack)
    {
        int claimed = 0;
        bool ok = true;
        for (; claimed < writeBack.StripeCount; claimed++)
        {
            // A full fence; pairs with the writers' Interlocked increments in EnterWrite.
            if (Interlocked.CompareExchange(ref _writeBacks[Index(writeBack.FirstStripe, claimed)], writeBack, null) is not null)
            {
                ok = false;
                break;
            }
        }

        ok = ok && Snapshot(writeBack.FirstStripe, writeBack.StripeCount) == writeBack.Generation;
        if (!ok)
        {
            for (int i = 0; i < claimed; i++)
            {
                Volatile.Write(ref _writeBacks[Index(writeBack.FirstStripe, i)], null);
            }

            writeBack.Done.TrySetResult();
        }

        return ok;
    }

    private void Release(WriteBack writeBack)
    {
        for (int i = 0; i < writeBack.StripeCount; i++)
        {
            Volatile.Write(ref _writeBacks[Index(writeBack.FirstStripe, i)], null);
        }

        writeBack.Done.TrySetResult();
    }

    /// <summary>Writes the copy into what the leaf still does not hold (no guest write can run on these stripes now).</summary>
    private async Task WriteHolesAsync(WriteBack writeBack)
    {
        var own = new ExtentList();
        try
        {
            await Next.GetOwnAllocationAsync(writeBack.OffsetBytes, writeBack.LengthBytes, own).ConfigureAwait(false);
            for (int i = 0; i < own.Count; i++)
            {
                ImageExtent extent = own[i];
                // A pause for low space stops new write-backs, not this one: its room was counted when it was queued.
                if ((extent.Flags & ExtentFlags.Hole) == 0 || Volatile.Read(ref _enospc) != 0)
                {
                    continue;
                }

                int at = (int)(extent.OffsetBytes - writeBack.OffsetBytes);
                ReadOnlyMemory<byte> data = writeBack.Data.AsMemory(at, (int)extent.LengthBytes);
                if (!data.Span.ContainsAnyExcept((byte)0))
                {
                    // Zeros (the parent's unallocated space, mostly) read the same from the parent at no data I/O:
                    // not worth the leaf's space. blktap writes them back too.
                    continue;
                }

                await Next.WriteAsync(extent.OffsetBytes, data, WriteFlags.None).ConfigureAwait(false);
                Interlocked.Add(ref _writtenBackBytes, extent.LengthBytes);
            }

            Interlocked.Increment(ref _completedWriteBacks);
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ObjectDisposedException)
        {
            int errno = StorageErrors.ToErrno(e);
            if (errno == Errno.ENOSPC)
            {
                // As blktap: no more write-backs on this open; what the leaf lacks stays readable from the parent.
                if (Interlocked.Exchange(ref _enospc, 1) == 0)
                {
                    Log.StoppedOnEnospc(_logger, Next.Path);
                }
            }
            else
            {
                Log.WriteBackFailed(_logger, Next.Path, writeBack.LengthBytes, writeBack.OffsetBytes, errno);
            }
        }
    }

    /// <summary>One write-back: a copy of what was read, and the stripes it holds while it writes.</summary>
    private sealed class WriteBack(long offsetBytes, int lengthBytes, byte[] data, long firstStripe, int stripeCount, long generation)
    {
        public long OffsetBytes { get; } = offsetBytes;

        public int LengthBytes { get; } = lengthBytes;

        public byte[] Data { get; } = data;

        public long FirstStripe { get; } = firstStripe;

        public int StripeCount { get; } = stripeCount;

        public long Generation { get; } = generation;

        /// <summary>Completed when its stripes are free again; guest writes that found it wait on this.</summary>
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
