namespace Tapdisk.XenStore;

/// <summary>What <see cref="XenStoreClient.Events"/> delivers.</summary>
public enum XenStoreEventKind
{
    /// <summary>An XS_WATCH_EVENT: <see cref="XenStoreEvent.Path"/> changed (or a watch was just registered).</summary>
    Watch,

    /// <summary>The connection was lost and made again, and every watch is registered anew: re-read all state.</summary>
    Reconnected,

    /// <summary>The connection was lost; requests fail until <see cref="Reconnected"/>.</summary>
    Disconnected,
}

/// <summary>One watch event or connection change, in the order the client saw it.</summary>
public readonly record struct XenStoreEvent(XenStoreEventKind Kind, string Path, string Token)
{
    public static XenStoreEvent Reconnected { get; } = new(XenStoreEventKind.Reconnected, string.Empty, string.Empty);

    public static XenStoreEvent Disconnected { get; } = new(XenStoreEventKind.Disconnected, string.Empty, string.Empty);
}
