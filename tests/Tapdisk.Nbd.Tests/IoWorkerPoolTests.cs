using Tapdisk.Storage;

namespace Tapdisk.Nbd.Tests;

public sealed class IoWorkerPoolTests
{
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(30);

    [Fact]
    public void BlockingItems_RunConcurrently_UpToTheQueueDepth()
    {
        // 32 items that can only finish together: a pool that ran fewer at once would time out the barrier.
        var pool = new IoWorkerPool(64);
        using var barrier = new Barrier(32);
        using var done = new CountdownEvent(32);
        int failures = 0;
        for (int i = 0; i < 32; i++)
        {
            pool.Queue(new Item(() =>
            {
                if (!barrier.SignalAndWait(s_patience))
                {
                    Interlocked.Increment(ref failures);
                }

                done.Signal();
            }));
        }

        Assert.True(done.Wait(s_patience * 2));
        Assert.Equal(0, failures);
        Assert.Equal(32, pool.ThreadCount);
    }

    [Fact]
    public void ManyItems_RespectTheBound_AndAllRun()
    {
        var pool = new IoWorkerPool(4);
        using var done = new CountdownEvent(500);
        int running = 0, peak = 0;
        for (int i = 0; i < 500; i++)
        {
            pool.Queue(new Item(() =>
            {
                int now = Interlocked.Increment(ref running);
                int seen;
                while (now > (seen = Volatile.Read(ref peak)) && Interlocked.CompareExchange(ref peak, now, seen) != seen)
                {
                }

                Thread.SpinWait(1000);
                Interlocked.Decrement(ref running);
                done.Signal();
            }));
        }

        Assert.True(done.Wait(s_patience));
        Assert.InRange(peak, 1, 4);
        Assert.InRange(pool.ThreadCount, 1, 4);
    }

    [Fact]
    public void IdleThreads_Leave_AndThePoolStillServesAfterwards()
    {
        var pool = new IoWorkerPool(8, idleTimeout: TimeSpan.FromMilliseconds(50));
        using (var done = new CountdownEvent(8))
        {
            using var barrier = new Barrier(8);
            for (int i = 0; i < 8; i++)
            {
                pool.Queue(new Item(() =>
                {
                    barrier.SignalAndWait(s_patience);
                    done.Signal();
                }));
            }

            Assert.True(done.Wait(s_patience));
        }

        Assert.True(SpinWait.SpinUntil(() => pool.ThreadCount == 0, s_patience), $"{pool.ThreadCount} threads still alive");

        using var again = new ManualResetEventSlim();
        pool.Queue(new Item(again.Set));
        Assert.True(again.Wait(s_patience));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(50)]
    [InlineData(100_000)]
    public void OneItemAtATime_EachRuns_WhetherAWorkerSpinsOrParks(int spinMicroseconds)
    {
        // Queue depth 1: each item is queued right after the previous one finished, so it usually meets the worker
        // spinning (or parked, with no spin): a claim the worker missed would hang here.
        var pool = new IoWorkerPool(4, spin: TimeSpan.FromMicroseconds(spinMicroseconds));
        using var done = new AutoResetEvent(false);
        var item = new Item(() => done.Set());
        for (int i = 0; i < 2000; i++)
        {
            pool.Queue(item);
            Assert.True(done.WaitOne(s_patience), $"item {i} never ran");
        }

        Assert.InRange(pool.ThreadCount, 1, 4);
    }

    [Fact]
    public void ConcurrentProducers_AgainstASpinningWorker_LoseNoItem()
    {
        var pool = new IoWorkerPool(2, spin: TimeSpan.FromMilliseconds(1));
        const int PerProducer = 5000;
        using var done = new CountdownEvent(4 * PerProducer);
        var item = new Item(() => done.Signal());
        Parallel.For(0, 4, _ =>
        {
            for (int i = 0; i < PerProducer; i++)
            {
                pool.Queue(item);
                if (i % 64 == 0)
                {
                    Thread.Sleep(0);
                }
            }
        });
        Assert.True(done.Wait(s_patience), $"{done.CurrentCount} items never ran");
        Assert.InRange(pool.ThreadCount, 1, 2);
    }

    [Fact]
    public void NegativeSpin_IsRejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new IoWorkerPool(1, spin: TimeSpan.FromTicks(-1)));

    private sealed class Item(Action action) : IThreadPoolWorkItem
    {
        public void Execute() => action();
    }
}
