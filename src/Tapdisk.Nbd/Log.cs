using Microsoft.Extensions.Logging;

namespace Tapdisk.Nbd;

/// <summary>Log messages of the NBD server; event ids are stable (retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Debug, "NBD connection {ConnectionId} opened")]
    public static partial void ConnectionOpened(ILogger logger, long connectionId);

    [LoggerMessage(2, LogLevel.Debug, "NBD connection {ConnectionId} closed")]
    public static partial void ConnectionClosed(ILogger logger, long connectionId);

    [LoggerMessage(3, LogLevel.Information, "NBD connection {ConnectionId}: handshake ended: {Reason}")]
    public static partial void HandshakeEnded(ILogger logger, long connectionId, string reason);

    [LoggerMessage(4, LogLevel.Information, "NBD connection {ConnectionId}: protocol violation, closing: {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, long connectionId, string reason);

    [LoggerMessage(5, LogLevel.Debug, "NBD connection {ConnectionId}: peer went away")]
    public static partial void PeerReset(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(6, LogLevel.Trace, "NBD connection {ConnectionId}: command {Command} at {OffsetBytes}+{LengthBytes} failed with NBD error {Error}")]
    public static partial void RequestFailed(ILogger logger, long connectionId, ushort command, ulong offsetBytes, ulong lengthBytes, uint error, Exception? exception);

    [LoggerMessage(7, LogLevel.Warning, "NBD connection {ConnectionId} failed unexpectedly")]
    public static partial void ConnectionFailed(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(8, LogLevel.Debug, "NBD connection {ConnectionId}: entering transmission on export '{ExportName}' with {Headers} headers")]
    public static partial void TransmissionStarted(ILogger logger, long connectionId, string exportName, string headers);

    [LoggerMessage(9, LogLevel.Information, "NBD: {Count} clients dropped for not finishing the handshake within {TimeoutSeconds} s")]
    public static partial void HandshakeTimedOut(ILogger logger, int count, double timeoutSeconds);

    [LoggerMessage(20, LogLevel.Information, "NBD listener on {Path} started")]
    public static partial void ListenerStarted(ILogger logger, string path);

    [LoggerMessage(21, LogLevel.Information, "NBD listener on {Path} stopped")]
    public static partial void ListenerStopped(ILogger logger, string path);

    [LoggerMessage(22, LogLevel.Warning, "NBD listener on {Path}: accept failed")]
    public static partial void AcceptFailed(ILogger logger, string path, Exception exception);

    [LoggerMessage(23, LogLevel.Warning, "NBD fd receiver on {Path}: no client socket taken: {Reason}")]
    public static partial void FdReceiveFailed(ILogger logger, string path, string reason);
}
