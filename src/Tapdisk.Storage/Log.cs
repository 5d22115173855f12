using Microsoft.Extensions.Logging;

namespace Tapdisk.Storage;

/// <summary>Storage events (ids 4000-4099; retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "{Vbd}: {Operation} of {LengthBytes} bytes at offset {OffsetBytes} failed: errno {Errno}")]
    public static partial void RequestFailed(ILogger logger, string vbd, BlockOperation operation, long lengthBytes, long offsetBytes, int errno, Exception? exception);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "{Vbd}: {Count} more failure lines dropped in the last window")]
    public static partial void Suppressed(ILogger logger, string vbd, long count);

    // 4003, 4004: reserved (pause and resume are logged by the daemon, which knows why).

    [LoggerMessage(EventId = 4005, Level = LogLevel.Error, Message = "{Vbd}: a request's frontend code failed on an I/O worker")]
    public static partial void DispatchFailed(ILogger logger, string vbd, Exception exception);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Error, Message = "{Vbd}: a frontend's resume listener failed")]
    public static partial void ResumeListenerFailed(ILogger logger, string vbd, Exception exception);
}
