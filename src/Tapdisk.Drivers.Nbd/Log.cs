using Microsoft.Extensions.Logging;

namespace Tapdisk.Drivers.Nbd;

/// <summary>NBD client events (ids 4200-4299; retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4201, Level = LogLevel.Information, Message = "nbd:{Address}: connected ({Style}, {SizeBytes} bytes, transmission flags 0x{Flags:x4})")]
    public static partial void Connected(ILogger logger, string address, string style, long sizeBytes, ushort flags);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Error, Message = "nbd:{Address}: connection failed, {Pending} requests in flight fail: {Reason}")]
    public static partial void ConnectionFailed(ILogger logger, string address, int pending, string reason);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Debug, Message = "nbd:{Address}: disconnected")]
    public static partial void Disconnected(ILogger logger, string address);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Warning, Message = "nbd:{Address}: server refused export '{Export}', retrying with the default export")]
    public static partial void RetryDefaultExport(ILogger logger, string address, string export);

    [LoggerMessage(EventId = 4205, Level = LogLevel.Error, Message = "nbd:{Address}: receive thread did not stop within {Seconds} s of the socket's shutdown")]
    public static partial void ReceiverStuck(ILogger logger, string address, double seconds);
}
