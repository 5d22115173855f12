using Xunit;

namespace Tapdisk.Testing;

public static class Allocations
{
    /// <summary>
    /// Runs <paramref name="round"/> <paramref name="rounds"/> times on this thread and asserts that one round
    /// allocated nothing. An allocation per request shows in every round; the runtime's own rare allocation on this
    /// thread (a tier-up or first-time lookup landing inside the measurement) in one round at most, and CI once failed
    /// on such a single round.
    /// </summary>
    public static void AssertNoneInSomeRound(Action round, string what, int rounds = 3)
    {
        ArgumentNullException.ThrowIfNull(round);
        long[] bytes = new long[rounds];
        for (int i = 0; i < rounds; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            round();
            bytes[i] = GC.GetAllocatedBytesForCurrentThread() - before;
            if (bytes[i] == 0)
            {
                return;
            }
        }

        string seen = $"{string.Join(", ", bytes)} bytes allocated in {rounds} rounds of {what}";
#if DEBUG
        // Debug builds compile async methods to classes, one object per call; CI runs the tests in Release.
        Assert.True(bytes.Min() < 1024 * 1024, seen);
#else
        Assert.Fail(seen);
#endif
    }
}
