using Microsoft.Extensions.Logging;

namespace Tapdisk.Filters.Cache;

/// <summary>Read-cache events (ids 4200-4299; retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4201, Level = LogLevel.Warning, Message = "lc {Leaf}: write-back {State} ({FreeBytes} bytes free on the leaf's file system; the floor is 2 MiB plus one VHD block)")]
    private static partial void SpaceChanged(ILogger logger, string leaf, string state, long freeBytes);

    public static void SpaceLow(ILogger logger, string leaf, bool low, long freeBytes) => SpaceChanged(logger, leaf, low ? "paused" : "resumed", freeBytes);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Warning, Message = "lc {Leaf}: write-back stopped for this open after ENOSPC; reads keep coming from the parent")]
    public static partial void StoppedOnEnospc(ILogger logger, string leaf);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Warning, Message = "lc {Leaf}: write-back of {LengthBytes} bytes at offset {OffsetBytes} failed: errno {Errno}; the sectors stay with the parent")]
    public static partial void WriteBackFailed(ILogger logger, string leaf, int lengthBytes, long offsetBytes, int errno);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Information, Message = "lc {Leaf}: -r not applied: {Why} (blktap inserts lc only over a leaf with a parent)")]
    public static partial void NotInserted(ILogger logger, string leaf, string why);
}
