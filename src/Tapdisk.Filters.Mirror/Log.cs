using Microsoft.Extensions.Logging;

namespace Tapdisk.Filters.Mirror;

/// <summary>Secondary-image events (ids 4200-4299; retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4201, Level = LogLevel.Error, Message = "{Vbd}: secondary {Secondary} failed ({Reason}); dropped it, the primary serves on and the mirror is incomplete (nbd_mirror_failed 1)")]
    public static partial void SecondaryDropped(ILogger logger, string vbd, string secondary, string reason, Exception exception);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Warning, Message = "{Vbd}: primary {Primary} is out of space ({Reason}); changes now go to secondary {Secondary} ({Mode} mode)")]
    public static partial void Redirected(ILogger logger, string vbd, string primary, string reason, string secondary, SecondaryMode mode);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Error, Message = "{Vbd}: cannot create the ENOSPC signal file {Path}")]
    public static partial void SignalFailed(ILogger logger, string vbd, string path, Exception exception);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Error, Message = "{Vbd}: closing the dropped secondary {Secondary} failed")]
    public static partial void DisposeFailed(ILogger logger, string vbd, string secondary, Exception exception);
}
