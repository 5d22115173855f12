namespace Tapdisk.Storage;

/// <summary>
/// Per-VBD log budget, as blktap's loglimit: at most <c>budget</c> lines per window, then one line saying how many
/// were dropped. Thread-safe; cheap enough to ask on every failure.
/// </summary>
public sealed class LogRateLimiter
{
    private readonly Lock _lock = new();
    private readonly int _budgetPerWindow;
    private readonly long _windowMilliseconds;
    private long _windowStart = long.MinValue;
    private int _budget;
    private long _suppressed;

    public LogRateLimiter(int budgetPerWindow = 20, TimeSpan? window = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(budgetPerWindow, 1);
        _budgetPerWindow = budgetPerWindow;
        _windowMilliseconds = (long)(window ?? TimeSpan.FromSeconds(10)).TotalMilliseconds;
    }

    /// <summary>
    /// True if one more line may be written now. <paramref name="suppressedBefore"/> is the count dropped in the window
    /// that just ended (report it once, before this line), else 0.
    /// </summary>
    public bool TryTake(out long suppressedBefore)
    {
        long now = Environment.TickCount64;
        lock (_lock)
        {
            suppressedBefore = 0;
            if (_windowStart == long.MinValue || now - _windowStart >= _windowMilliseconds)
            {
                suppressedBefore = _suppressed;
                _windowStart = now;
                _budget = _budgetPerWindow;
                _suppressed = 0;
            }

            if (_budget > 0)
            {
                _budget--;
                return true;
            }

            _suppressed++;
            return false;
        }
    }
}
