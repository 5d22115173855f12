using System.Buffers;
using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// A pool of page-aligned native buffers for O_DIRECT bounce copies and protocol receive buffers, in power-of-two
/// buckets from 4 KiB to 32 MiB (the largest NBD request). A bucket keeps up to 1024 buffers and 64 MiB, and the
/// pool 128 MiB in all (making room by freeing the sizes rented least recently), so a burst of big requests cannot
/// pin much memory. Sized for the deepest common pipeline:
/// nbdcopy keeps 4 x 64 requests of 256 KiB in flight, and with only 64 buffers per bucket three in four of them
/// were allocated, zeroed and freed per request (8% of the server's CPU in a copy). Only buffers bigger than
/// <see cref="MaxPooledBytes"/> are always allocated and freed per rent.
/// </summary>
public sealed class AlignedBufferPool
{
    public const int MaxPooledBytes = 32 * 1024 * 1024;

    /// <summary>The size callers copy through in slices when a whole-request buffer is not needed.</summary>
    public const int ChunkBytes = 1024 * 1024;

    private const int MaxRetainedPerBucket = 1024;
    private const long MaxRetainedBytesPerBucket = 64L * 1024 * 1024;
    private const long MaxRetainedBytes = 128L * 1024 * 1024;

    private readonly Lock _lock = new();
    private readonly Stack<AlignedMemory>[] _buckets;
    private readonly long[] _lastRent;
    private long _retainedBytes;
    private long _rents;

    public AlignedBufferPool()
    {
        // Buckets by power of two from 4 KiB to 32 MiB.
        _buckets = new Stack<AlignedMemory>[14];
        _lastRent = new long[_buckets.Length];
        for (int i = 0; i < _buckets.Length; i++)
        {
            _buckets[i] = new Stack<AlignedMemory>();
        }
    }

    public static AlignedBufferPool Shared { get; } = new();

    /// <summary>Rents at least <paramref name="minimumBytes"/> of page-aligned memory; Return it when done.</summary>
    public AlignedMemory Rent(int minimumBytes)
    {
        int bucket = BucketOf(minimumBytes);
        if (bucket < 0)
        {
            return new AlignedMemory(RoundUp(minimumBytes));
        }

        lock (_lock)
        {
            _lastRent[bucket] = ++_rents;
            if (_buckets[bucket].TryPop(out AlignedMemory? memory))
            {
                _retainedBytes -= memory.Length;
                return memory;
            }
        }

        return new AlignedMemory(4096 << bucket);
    }

    public void Return(AlignedMemory memory)
    {
        int bucket = BucketOf(memory.Length);
        if (bucket >= 0 && (4096 << bucket) == memory.Length)
        {
            lock (_lock)
            {
                if (_buckets[bucket].Count < RetainedLimit(memory.Length) && MakeRoom(bucket, memory.Length))
                {
                    _retainedBytes += memory.Length;
                    _buckets[bucket].Push(memory);
                    return;
                }
            }
        }

        ((IDisposable)memory).Dispose();
    }

    /// <summary>
    /// Frees buffers of sizes rented less recently than <paramref name="bucket"/>'s until <paramref name="bytes"/> more
    /// fit the pool's bound; false if they cannot. Without it the sizes of the first big burst (say nbdcopy's 256 KiB)
    /// would keep the whole bound for the process's life, and every other size would be allocated per request again.
    /// </summary>
    private bool MakeRoom(int bucket, int bytes)
    {
        while (_retainedBytes + bytes > MaxRetainedBytes)
        {
            int coldest = -1;
            for (int b = 0; b < _buckets.Length; b++)
            {
                if (b != bucket && _buckets[b].Count > 0 && _lastRent[b] < _lastRent[bucket] && (coldest < 0 || _lastRent[b] < _lastRent[coldest]))
                {
                    coldest = b;
                }
            }

            if (coldest < 0)
            {
                return false;
            }

            AlignedMemory evicted = _buckets[coldest].Pop();
            _retainedBytes -= evicted.Length;
            ((IDisposable)evicted).Dispose();
        }

        return true;
    }

    private static int RetainedLimit(int bucketBytes) =>
        (int)Math.Min(MaxRetainedPerBucket, MaxRetainedBytesPerBucket / bucketBytes);

    private static int BucketOf(int bytes)
    {
        if (bytes > MaxPooledBytes)
        {
            return -1;
        }

        int bucket = 0;
        while ((4096 << bucket) < bytes)
        {
            bucket++;
        }

        return bucket;
    }

    private static int RoundUp(int bytes) => (bytes + 4095) & ~4095;
}

/// <summary>An <see cref="IMemoryOwner{T}"/> view of a rented aligned buffer, for protocol code.</summary>
public sealed class AlignedBufferLease : IMemoryOwner<byte>
{
    private readonly AlignedBufferPool _pool;
    private AlignedMemory? _buffer;
    private readonly int _length;

    public AlignedBufferLease(AlignedBufferPool pool, int length)
    {
        _pool = pool;
        _length = length;
        _buffer = pool.Rent(length);
    }

    public Memory<byte> Memory => (_buffer ?? throw new ObjectDisposedException(nameof(AlignedBufferLease))).Memory[.._length];

    public void Dispose()
    {
        AlignedMemory? buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
        {
            _pool.Return(buffer);
        }
    }
}
