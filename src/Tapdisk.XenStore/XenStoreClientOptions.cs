namespace Tapdisk.XenStore;

/// <summary>How <see cref="XenStoreClient"/> finds xenstored and how it retries after losing it.</summary>
public sealed class XenStoreClientOptions
{
    /// <summary>Endpoints tried in order on every (re)connect; null means <see cref="XenStoreEndpoint.DefaultCandidates"/>.</summary>
    public IReadOnlyList<XenStoreEndpoint>? Endpoints { get; init; }

    /// <summary>Reconnect after the connection is lost (xenstored restarted), re-registering every watch.</summary>
    public bool Reconnect { get; init; } = true;

    public TimeSpan ReconnectMinimumDelay { get; init; } = TimeSpan.FromMilliseconds(50);

    public TimeSpan ReconnectMaximumDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many times a transaction is redone after EAGAIN before the EAGAIN is returned to the caller.</summary>
    public int TransactionAttempts { get; init; } = 64;
}
