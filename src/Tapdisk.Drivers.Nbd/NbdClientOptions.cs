using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Tapdisk.Drivers.Nbd;

/// <summary>Bounds and logging for NBD client connections.</summary>
public sealed record NbdClientOptions
{
    public static NbdClientOptions Default { get; } = new();

    /// <summary>Connect plus negotiation, in total (blktap bounds each negotiation step by 10 s).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a request may wait for its reply (and a send for socket space) before the connection is declared dead
    /// and every request on it fails with ETIMEDOUT. Shorter than the VBD's 120 s request timeout, so a stalled
    /// server is reported as what it is rather than as a stuck guest request.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests in flight per connection (blktap's client allows 352), at most <see cref="MaxInFlightLimit"/>.</summary>
    public int MaxInFlight { get; init; } = 352;

    /// <summary>The most <see cref="MaxInFlight"/> may be: every request's header and payload, and DISC, must fit one sendmsg (1024 buffers).</summary>
    public const int MaxInFlightLimit = 511;

    public ILogger Logger { get; init; } = NullLogger.Instance;
}
