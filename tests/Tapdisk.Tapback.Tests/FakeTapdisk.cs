using Tapdisk.Control;

namespace Tapdisk.Tapback.Tests;

/// <summary>
/// A tapdisk control endpoint for tests (no /dev/xen here, so no real ring can be mapped): answers PID, LIST and
/// DISK_INFO like tapdisk, and records every XENBLKIF_CONNECT / DISCONNECT byte for byte.
/// </summary>
public sealed class FakeTapdisk : IControlHandler, IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly List<TapdiskMessage> _connects = [];
    private readonly List<TapdiskMessage> _disconnects = [];
    private int _diskInfoRequests;
    private readonly ControlServer _server;

    public FakeTapdisk(string controlDirectory, int pid, int minor, ulong sectors, uint sectorSize = 512, uint info = 0)
    {
        Pid = pid;
        Minor = minor;
        Sectors = sectors;
        SectorSize = sectorSize;
        Info = info;
        Directory.CreateDirectory(controlDirectory);
        _server = ControlServer.Listen(Path.Combine(controlDirectory, $"ctl{pid}"), this);
        _server.Start();
    }

    public int Pid { get; }

    public int Minor { get; }

    public ulong Sectors { get; }

    public uint SectorSize { get; }

    public uint Info { get; }

    /// <summary>errno for the next CONNECTs (0 = success); EALREADY, ENOSYS... as tapdisk answers them.</summary>
    public int ConnectErrno { get; set; }

    /// <summary>While set, DISK_INFO is answered only once it completes: the agent stays inside one reconcile.</summary>
    public Task? DiskInfoGate { get; set; }

    /// <summary>DISK_INFO requests seen so far.</summary>
    public int DiskInfoRequests => Volatile.Read(ref _diskInfoRequests);

    public IReadOnlyList<TapdiskMessage> Connects
    {
        get
        {
            lock (_lock)
            {
                return [.. _connects];
            }
        }
    }

    public IReadOnlyList<TapdiskMessage> Disconnects
    {
        get
        {
            lock (_lock)
            {
                return [.. _disconnects];
            }
        }
    }

    public async Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        switch (request.Type)
        {
            case TapdiskMessageType.Pid:
                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.PidResponse, request.Cookie) { Pid = Pid }, cancellationToken);
                break;
            case TapdiskMessageType.List:
                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.ListResponse, request.Cookie) { ListCount = 1, ListMinor = Minor, ListState = 0, ListPath = "vhd:/x.vhd" }, cancellationToken);
                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.ListResponse, request.Cookie) { ListCount = 0, ListMinor = -1 }, cancellationToken);
                break;
            case TapdiskMessageType.DiskInfo when request.Cookie == Minor:
                Interlocked.Increment(ref _diskInfoRequests);
                if (DiskInfoGate is { } gate)
                {
                    await gate.WaitAsync(cancellationToken);
                }

                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.DiskInfoResponse, request.Cookie) { ImageSectors = Sectors, ImageSectorSize = SectorSize, ImageInfo = Info }, cancellationToken);
                break;
            case TapdiskMessageType.XenblkifConnect:
                lock (_lock)
                {
                    _connects.Add(TapdiskMessage.Parse(request.Bytes));
                }

                await connection.SendAsync(
                    ConnectErrno == 0 ? new TapdiskMessage(TapdiskMessageType.XenblkifConnectResponse, request.Cookie) : TapdiskMessage.ErrorReply(request.Cookie, ConnectErrno),
                    cancellationToken);
                break;
            case TapdiskMessageType.XenblkifDisconnect:
                lock (_lock)
                {
                    _disconnects.Add(TapdiskMessage.Parse(request.Bytes));
                }

                await connection.SendAsync(new TapdiskMessage(TapdiskMessageType.XenblkifDisconnectResponse, request.Cookie), cancellationToken);
                break;
            default:
                await connection.SendAsync(TapdiskMessage.ErrorReply(request.Cookie, 19), cancellationToken);
                break;
        }
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
