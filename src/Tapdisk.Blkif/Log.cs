using Microsoft.Extensions.Logging;

namespace Tapdisk.Blkif;

/// <summary>Log messages of the blkif ring; event ids are stable (retired ids stay reserved).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "blkif {Domid}/{Devid}: ring connected: {Pages} page(s), {Slots} slots, {Protocol}, local port {Port}")]
    public static partial void Connected(ILogger logger, uint domid, uint devid, int pages, int slots, BlkifProtocol protocol, uint port);

    [LoggerMessage(2, LogLevel.Information, "blkif {Domid}/{Devid}: ring disconnected")]
    public static partial void Disconnected(ILogger logger, uint domid, uint devid);

    [LoggerMessage(3, LogLevel.Error, "blkif {Domid}/{Devid}: frontend corrupted the ring ({Reason}): req_prod {ReqProd}, rsp_prod_pvt {RspProdPvt}, {Slots} slots; this ring is stopped, other disks carry on")]
    public static partial void RingBroken(ILogger logger, uint domid, uint devid, string reason, uint reqProd, uint rspProdPvt, int slots);

    [LoggerMessage(4, LogLevel.Warning, "blkif {Domid}/{Devid}: request {Id} (op {Operation}) rejected: {Reason}")]
    public static partial void RequestRejected(ILogger logger, uint domid, uint devid, ulong id, byte operation, string reason);

    [LoggerMessage(5, LogLevel.Warning, "blkif {Domid}/{Devid}: request {Id}: grant copy failed: {Reason}")]
    public static partial void GrantCopyFailed(ILogger logger, uint domid, uint devid, ulong id, string reason);

    [LoggerMessage(6, LogLevel.Warning, "blkif {Domid}/{Devid}: request {Id} (op {Operation}) failed at the image: errno {Errno}")]
    public static partial void ImageFailed(ILogger logger, uint domid, uint devid, ulong id, byte operation, int errno);

    [LoggerMessage(7, LogLevel.Warning, "blkif {Domid}/{Devid}: {Count} similar messages suppressed")]
    public static partial void Suppressed(ILogger logger, uint domid, uint devid, long count);

    [LoggerMessage(8, LogLevel.Error, "blkif {Domid}/{Devid}: event channel error: errno {Errno}")]
    public static partial void EventChannelError(ILogger logger, uint domid, uint devid, int errno);

    [LoggerMessage(9, LogLevel.Critical, "blkif {Domid}/{Devid}: ring loop failed; this ring is stopped")]
    public static partial void LoopFailed(ILogger logger, uint domid, uint devid, Exception exception);

    [LoggerMessage(10, LogLevel.Warning, "blkif {Domid}/{Devid}: disconnect: {InFlight} request(s) still at the image after {Seconds} s; the ring is released when they finish")]
    public static partial void DrainTimedOut(ILogger logger, uint domid, uint devid, int inFlight, double seconds);

    [LoggerMessage(11, LogLevel.Warning, "blkif {Domid}/{Devid}: no io_uring loop for this ring (its I/O goes to the I/O workers)")]
    public static partial void LoopUnavailable(ILogger logger, uint domid, uint devid, Exception exception);
}
