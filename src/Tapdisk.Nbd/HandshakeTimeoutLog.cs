using Microsoft.Extensions.Logging;

namespace Tapdisk.Nbd;

/// <summary>
/// Counts clients dropped for not finishing the handshake in time and logs them as one line per burst: the first drop
/// starts a window as long as the handshake timeout, and when it ends the count is logged and the next drop starts a
/// new one. So a flood of half-open connections costs at most one line per timeout, never one per client.
/// </summary>
internal sealed class HandshakeTimeoutLog
{
    private readonly ILogger _logger;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private int _pending;
    private ITimer? _timer;

    public HandshakeTimeoutLog(ILogger logger, TimeSpan timeout, TimeProvider time)
    {
        _logger = logger;
        _timeout = timeout;
        _time = time;
    }

    /// <summary>One client was dropped; it is logged when the current window ends.</summary>
    public void Dropped()
    {
        lock (_lock)
        {
            if (_pending++ == 0)
            {
                // Report runs under the same lock, so it cannot see the timer field before this assignment.
                _timer = _time.CreateTimer(static state => ((HandshakeTimeoutLog)state!).Report(), this, _timeout, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private void Report()
    {
        int count;
        lock (_lock)
        {
            count = _pending;
            _pending = 0;
            _timer?.Dispose();
            _timer = null;
        }

        if (count > 0)
        {
            Log.HandshakeTimedOut(_logger, count, _timeout.TotalSeconds);
        }
    }
}
