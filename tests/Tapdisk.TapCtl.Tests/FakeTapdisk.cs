using System.Text;
using Tapdisk.Control;

namespace Tapdisk.TapCtl.Tests;

/// <summary>
/// A stand-in tapdisk on ctl&lt;pid&gt; built on <see cref="ControlServer"/>: it records every request (with its
/// trailer) and answers as the reference daemon does (control-xen.md 3.4), including the marker flock on ATTACH.
/// </summary>
public sealed class FakeTapdisk : IControlHandler, IAsyncDisposable
{
    private const int EPERM = 1;
    private const int ENODEV = 19;
    private const int EBUSY = 16;
    private const int EEXIST = 17;
    private const int EINVAL = 22;
    private const int EALREADY = 114;

    private readonly Lock _lock = new();
    private readonly List<Vbd> _vbds = [];
    private readonly List<RecordedRequest> _requests = [];
    private readonly string _root;
    private ControlServer? _server;

    private FakeTapdisk(string root, int pid)
    {
        _root = root;
        Pid = pid;
    }

    public int Pid { get; }

    /// <summary>OPEN of these params fails with the given errno (ENOENT for a missing file, and so on).</summary>
    public Dictionary<string, int> OpenFailures { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<RecordedRequest> Requests
    {
        get
        {
            lock (_lock)
            {
                return _requests.ToArray();
            }
        }
    }

    public IReadOnlyList<RecordedRequest> RequestsOfType(TapdiskMessageType type) => Requests.Where(r => r.Message.Type == type).ToArray();

    public static FakeTapdisk Start(string root, int pid)
    {
        var fake = new FakeTapdisk(root, pid);
        fake._server = ControlServer.Listen(Path.Combine(root, "ctl" + pid), fake);
        fake._server.Start();
        return fake;
    }

    public async Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        byte[] trailer = await ReadTrailerAsync(connection, request, cancellationToken);
        lock (_lock)
        {
            _requests.Add(new RecordedRequest(request, trailer));
        }

        foreach (TapdiskMessage reply in Reply(request))
        {
            await connection.SendAsync(reply, cancellationToken);
        }

        if (request.Type == TapdiskMessageType.Stats && Find(request.Cookie) is { } vbd)
        {
            await connection.SendAsync(Encoding.ASCII.GetBytes(StatsJson(vbd)), cancellationToken);
        }
    }

    /// <summary>The JSON the fake returns for STATS on a VBD.</summary>
    public static string StatsJson(int minor, string? path) => $"{{ \"name\": \"{path}\", \"minor\": {minor} }}";

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        lock (_lock)
        {
            _vbds.ForEach(v => v.Marker?.Dispose());
            _vbds.Clear();
        }
    }

    private static string StatsJson(Vbd vbd) => StatsJson(vbd.Minor, vbd.Path);

    private static async Task<byte[]> ReadTrailerAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken)
    {
        if (request.Type is not (TapdiskMessageType.Open or TapdiskMessageType.Resume))
        {
            return [];
        }

        var trailer = new List<byte>();
        TimeSpan timeout = TimeSpan.FromSeconds(10);
        if ((request.ParamsFlags & TapdiskOpenFlags.AddLog) != 0)
        {
            byte[] log = new byte[TapdiskMessage.PathLength];
            if (await connection.TryReadExactlyAsync(log, timeout, cancellationToken))
            {
                trailer.AddRange(log);
            }
        }

        if (request.Type == TapdiskMessageType.Open && (request.ParamsFlags & TapdiskOpenFlags.OpenEncrypted) != 0)
        {
            byte[] length = new byte[1];
            if (await connection.TryReadExactlyAsync(length, timeout, cancellationToken))
            {
                byte[] key = new byte[length[0]];
                await connection.TryReadExactlyAsync(key, timeout, cancellationToken);
                trailer.Add(length[0]);
                trailer.AddRange(key);
            }
        }

        return [.. trailer];
    }

    private List<TapdiskMessage> Reply(TapdiskMessage request)
    {
        lock (_lock)
        {
            ushort cookie = request.Cookie;
            Vbd? vbd = Find(cookie);
            switch (request.Type)
            {
                case TapdiskMessageType.Pid:
                    return [new TapdiskMessage(TapdiskMessageType.PidResponse, cookie) { Pid = Pid }];
                case TapdiskMessageType.Attach:
                    if (vbd is not null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EEXIST)];
                    }

                    FileStream? marker;
                    try
                    {
                        // FileShare.None makes .NET take flock(LOCK_EX) on Linux: the lock tapdisk holds on its marker.
                        marker = new FileStream(Path.Combine(_root, "tapdisk", "tapdisk-" + cookie), FileMode.Open, FileAccess.ReadWrite, FileShare.None);
                    }
                    catch (IOException)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EPERM)];
                    }

                    _vbds.Add(new Vbd(cookie) { Marker = marker });
                    return [Ok(TapdiskMessageType.AttachResponse, cookie)];
                case TapdiskMessageType.Open:
                    if (vbd is null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EINVAL)];
                    }

                    if (vbd.Path is not null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EALREADY)];
                    }

                    string path = request.ParamsPath ?? string.Empty;
                    if (!path.Contains(':', StringComparison.Ordinal))
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EINVAL)];
                    }

                    if (OpenFailures.TryGetValue(path, out int errno))
                    {
                        return [TapdiskMessage.ErrorReply(cookie, errno)];
                    }

                    vbd.Path = path;
                    vbd.State = 0;
                    return [new TapdiskMessage(TapdiskMessageType.OpenResponse, cookie) { ImageSectors = 0x8000, ImageSectorSize = 512 }];
                case TapdiskMessageType.Close or TapdiskMessageType.ForceShutdown:
                    if (vbd is null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, ENODEV)];
                    }

                    vbd.Path = null;
                    vbd.State = 0x2;
                    return [Ok(TapdiskMessageType.CloseResponse, cookie)];
                case TapdiskMessageType.Detach:
                    if (vbd is null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, ENODEV)];
                    }

                    if (vbd.Path is not null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EBUSY)];
                    }

                    vbd.Marker?.Dispose();
                    _vbds.Remove(vbd);
                    return [Ok(TapdiskMessageType.DetachResponse, cookie)];
                case TapdiskMessageType.Pause:
                    if (vbd is null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, ENODEV)];
                    }

                    vbd.State = 0x2A;
                    return [Ok(TapdiskMessageType.PauseResponse, cookie)];
                case TapdiskMessageType.Resume:
                    if (vbd is null)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, ENODEV)];
                    }

                    if ((vbd.State & 0x20) == 0)
                    {
                        return [TapdiskMessage.ErrorReply(cookie, EINVAL)];
                    }

                    if (request.ParamsPath is { Length: > 0 } newPath)
                    {
                        vbd.Path = newPath;
                    }

                    vbd.State = 0;
                    return [Ok(TapdiskMessageType.ResumeResponse, cookie)];
                case TapdiskMessageType.List:
                    var replies = new List<TapdiskMessage>();
                    for (int i = 0; i < _vbds.Count; i++)
                    {
                        replies.Add(new TapdiskMessage(TapdiskMessageType.ListResponse, cookie)
                        {
                            ListCount = _vbds.Count - i,
                            ListMinor = _vbds[i].Minor,
                            ListState = _vbds[i].State,
                            ListPath = _vbds[i].Path ?? string.Empty,
                        });
                    }

                    replies.Add(new TapdiskMessage(TapdiskMessageType.ListResponse, cookie) { ListCount = 0, ListMinor = -1 });
                    return replies;
                case TapdiskMessageType.Stats:
                    return vbd is null
                        ? [TapdiskMessage.ErrorReply(cookie, ENODEV)]
                        : [new TapdiskMessage(TapdiskMessageType.StatsResponse, cookie) { InfoLength = (ulong)StatsJson(vbd).Length }];
                default:
                    return [TapdiskMessage.ErrorReply(0, EINVAL)];
            }
        }
    }

    private Vbd? Find(int minor)
    {
        lock (_lock)
        {
            return _vbds.Find(v => v.Minor == minor);
        }
    }

    private static TapdiskMessage Ok(TapdiskMessageType type, ushort cookie) => new(type, cookie);

    private sealed class Vbd(int minor)
    {
        public int Minor { get; } = minor;

        public int State { get; set; }

        public string? Path { get; set; }

        public FileStream? Marker { get; set; }
    }
}

/// <summary>One request as the fake received it: the 544 bytes and whatever trailer followed them.</summary>
public sealed record RecordedRequest(TapdiskMessage Message, byte[] Trailer);
