using Tapdisk.Testing;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback.Tests;

/// <summary>
/// One test world: a test xenstored, a fake tapdisk control socket, and the tapback agent connected to both, with
/// helpers that play the toolstack (libxl's vbd3 nodes and the block-tap script's keys) and the frontend.
/// </summary>
internal sealed class TapbackHarness : IAsyncDisposable
{
    public const int TapdiskPid = 4242;
    public const int TapdiskMinor = 3;
    public const ulong DiskSectors = 2097152;
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _dir = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly LogCapture _logText = new();
    private readonly TapbackLog _log;
    private XenStoreClient _client = null!;
    private Task _run = Task.CompletedTask;

    private TapbackHarness(TapbackOptions options)
    {
        Store = new TestXenStored(_dir.File("xs.sock"));
        ControlDirectory = _dir.File("ctl");
        Tapdisk = new FakeTapdisk(ControlDirectory, TapdiskPid, TapdiskMinor, DiskSectors, info: 0);
        options.ControlDirectory = ControlDirectory;
        options.ControlTimeout = TimeSpan.FromSeconds(10);
        Options = options;
        _log = new TapbackLog(syslog: false, stderr: _logText) { Verbose = true };
    }

    public TestXenStored Store { get; }

    public FakeTapdisk Tapdisk { get; }

    public string ControlDirectory { get; }

    public TapbackOptions Options { get; }

    public string Log => _logText.ToString();

    public static async Task<TapbackHarness> StartAsync(TapbackOptions? options = null)
    {
        var harness = new TapbackHarness(options ?? new TapbackOptions());
        harness._client = await XenStoreClient.ConnectAsync(new XenStoreClientOptions { Endpoints = [harness.Store.Endpoint], ReconnectMaximumDelay = TimeSpan.FromMilliseconds(200) });
        var agent = new TapbackAgent(harness._client, harness.Options, harness._log);
        harness._run = agent.RunAsync(harness._stop.Token);
        await agent.Started.WaitAsync(s_hangGuard);
        return harness;
    }

    public static string Backend(uint frontend, uint device) => $"/local/domain/0/backend/vbd3/{frontend}/{device}";

    public static string Frontend(uint frontend, uint device) => $"/local/domain/{frontend}/device/vbd/{device}";

    /// <summary>What libxl writes in one transaction for a vbd3 disk (control-xen.md Part I 8.1).</summary>
    public void AddDevice(uint frontend, uint device, string mode = "w", string deviceType = "disk")
    {
        Store.IntroduceDomain(frontend);
        Store.WriteAll(
            Frontend(frontend, device),
            ("backend", Backend(frontend, device)), ("backend-id", "0"), ("state", "1"), ("virtual-device", $"{device}"), ("device-type", deviceType), ("protocol", "x86_64-abi"));
        Store.WriteAll(
            Backend(frontend, device),
            ("frontend", Frontend(frontend, device)), ("params", "vhd:/srv/disk.vhd"), ("script", "/etc/xen/scripts/block-tap"), ("frontend-id", $"{frontend}"),
            ("online", "1"), ("removable", "0"), ("bootable", "1"), ("state", "1"), ("dev", "xvda"), ("type", "vbd3"), ("mode", mode), ("device-type", deviceType));
    }

    /// <summary>What the block-tap script writes once tapdisk serves the image (control-xen.md Part I 8.2 step 5).</summary>
    public void Hotplug(uint frontend, uint device, string? physicalDevicePath = null)
    {
        Store.WriteAll(
            Backend(frontend, device),
            ("pid", $"{TapdiskPid}"), ("minor", $"{TapdiskMinor}"),
            ("physical-device-path", physicalDevicePath ?? Path.Combine(ControlDirectory, $"nbd{TapdiskPid}.{TapdiskMinor}")),
            ("hotplug-status", "connected"));
    }

    /// <summary>What blkfront writes before Initialised: one ring page.</summary>
    public void FrontendPublishesRing(uint frontend, uint device, uint ringRef = 8, uint eventChannel = 17)
    {
        Store.WriteAll(Frontend(frontend, device), ("ring-ref", $"{ringRef}"), ("event-channel", $"{eventChannel}"));
    }

    public void FrontendState(uint frontend, uint device, int state) => Store.Write(Frontend(frontend, device) + "/state", $"{state}");

    public string? BackendKey(uint frontend, uint device, string key) => Store.Read(Backend(frontend, device) + "/" + key);

    public Task WaitBackendState(uint frontend, uint device, int state) =>
        WaitUntil(() => BackendKey(frontend, device, "state") == $"{state}", $"backend state {state} (now {BackendKey(frontend, device, "state")})");

    /// <summary>Polls with a generous hang guard; tests never assert on time.</summary>
    public async Task WaitUntil(Func<bool> condition, string what)
    {
        using var cts = new CancellationTokenSource(s_hangGuard);
        while (!condition())
        {
            if (cts.IsCancellationRequested)
            {
                throw new TimeoutException($"waited for {what}; tapback log:\n{Log}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Lets the agent drain its events: a marker write it must observe goes through after everything before it.</summary>
    public async Task Settle()
    {
        string watched = Options.FrontendDomain is { } only ? $"/local/domain/0/backend/vbd3/{only}" : "/local/domain/0/backend/vbd3";
        string marker = watched + "/settle" + Guid.NewGuid().ToString("N");
        Store.Write(marker, "x");
        await WaitUntil(() => Log.Contains("ignoring " + marker, StringComparison.Ordinal), "the agent to settle");
        Store.Remove(marker);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _run;
        }
        catch (OperationCanceledException)
        {
            // the agent's normal way out
        }

        await _client.DisposeAsync();
        await Tapdisk.DisposeAsync();
        Store.Dispose();
        _log.Dispose();
        _stop.Dispose();
        _dir.Dispose();
    }
}
