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

    [Fact]
    public void LargeBuckets_RetainAtMost32MiB()
    {
        var pool = new AlignedBufferPool();
        const int eight = 8 * 1024 * 1024;
        AlignedMemory[] rented = [.. Enumerable.Range(0, 6).Select(_ => pool.Rent(eight))];
        foreach (AlignedMemory m in rented)
        {
            pool.Return(m);
        }

        AlignedMemory[] again = [.. Enumerable.Range(0, 6).Select(_ => pool.Rent(eight))];
        Assert.Equal(4, again.Count(m => rented.Contains(m)));
        foreach (AlignedMemory m in again)
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
