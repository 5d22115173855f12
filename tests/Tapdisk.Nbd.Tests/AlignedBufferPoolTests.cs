using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Nbd.Tests;

/// <summary>The pool NBD requests rent their payload buffers from, up to the 32 MiB request limit.</summary>
public sealed class AlignedBufferPoolTests
{
    [Theory]
    [InlineData(4096)]
    [InlineData(1024 * 1024)]
    [InlineData(3 * 1024 * 1024)]
    [InlineData(32 * 1024 * 1024)]
    public void ReturnedBuffer_IsReused_UpToTheLargestRequest(int bytes)
    {
        var pool = new AlignedBufferPool();
        AlignedMemory first = pool.Rent(bytes);
        Assert.True(first.Length >= bytes);
        Assert.True(PosixFile.IsAligned(first.GetSpan(), 4096));
        pool.Return(first);
        AlignedMemory second = pool.Rent(bytes);
        Assert.Same(first, second);
        pool.Return(second);
    }

    [Theory]
    [InlineData(8 * 1024 * 1024, 10, 8)] // a bucket keeps at most 64 MiB
    [InlineData(256 * 1024, 300, 256)] // ... so nbdcopy's 4 x 64 requests of 256 KiB in flight are all reused
    [InlineData(4096, 1100, 1024)] // and at most 1024 buffers
    public void Bucket_RetainsUpToItsLimit(int bytes, int count, int retained)
    {
        var pool = new AlignedBufferPool();
        AlignedMemory[] rented = [.. Enumerable.Range(0, count).Select(_ => pool.Rent(bytes))];
        ReturnAll(pool, rented);
        AlignedMemory[] again = [.. Enumerable.Range(0, count).Select(_ => pool.Rent(bytes))];
        var first = new HashSet<AlignedMemory>(rented);
        Assert.Equal(retained, again.Count(first.Contains));
        ReturnAll(pool, again);
    }

    [Fact]
    public void Pool_RetainsAtMost128MiBInAll_FreeingTheSizeRentedLeastRecently()
    {
        // Two full 64 MiB buckets reach the pool's bound; the 8 MiB size was rented first, so it is the coldest.
        var pool = new AlignedBufferPool();
        AlignedMemory[] eights = [.. Enumerable.Range(0, 8).Select(_ => pool.Rent(8 * 1024 * 1024))];
        AlignedMemory[] fours = [.. Enumerable.Range(0, 16).Select(_ => pool.Rent(4 * 1024 * 1024))];
        ReturnAll(pool, eights);
        ReturnAll(pool, fours);

        // A 1 MiB buffer, the size in use now, is kept: one 8 MiB buffer is freed to make room, no 4 MiB one.
        AlignedMemory one = pool.Rent(1024 * 1024);
        pool.Return(one);
        Assert.Same(one, pool.Rent(1024 * 1024));
        AlignedMemory[] eightsAgain = [.. Enumerable.Range(0, 8).Select(_ => pool.Rent(8 * 1024 * 1024))];
        AlignedMemory[] foursAgain = [.. Enumerable.Range(0, 16).Select(_ => pool.Rent(4 * 1024 * 1024))];
        Assert.Equal(7, eightsAgain.Count(eights.Contains));
        Assert.Equal(16, foursAgain.Count(fours.Contains));
        ReturnAll(pool, eightsAgain);
        ReturnAll(pool, foursAgain);
        pool.Return(one);
    }

    private static void ReturnAll(AlignedBufferPool pool, AlignedMemory[] buffers)
    {
        foreach (AlignedMemory m in buffers)
        {
            pool.Return(m);
        }
    }

    [Fact]
    public void AboveTheLimit_IsNotPooled()
    {
        var pool = new AlignedBufferPool();
        AlignedMemory big = pool.Rent(AlignedBufferPool.MaxPooledBytes + 4096);
        pool.Return(big);
        AlignedMemory again = pool.Rent(AlignedBufferPool.MaxPooledBytes + 4096);
        Assert.NotSame(big, again);
        pool.Return(again);
    }
}
