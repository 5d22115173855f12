using System.Diagnostics;
using Tapdisk.Logging;
using Tapdisk.Testing;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback.Tests;

/// <summary>
/// One test world: a test xenstored, a tapdisk (the fake control socket, or a real tapdisk made by the real tap-ctl),
/// and tapback (the agent in process, or the real executable) connected to both, with helpers that play the
/// toolstack (libxl's vbd3 nodes and the block-tap script's keys) and the frontend.
/// </summary>
internal sealed class TapbackHarness : IAsyncDisposable
{
    public const int TapdiskPid = 4242;
    public const int TapdiskMinor = 3;
    public const ulong DiskSectors = 2097152;
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly LogCapture _logText = new();
    private readonly ProcessLog _log;
    private XenStoreClient? _client;
    private Task _run = Task.CompletedTask;
    private Process? _process;

    private TapbackHarness(TapbackOptions options, bool realTapdisk)
    {
        Store = new TestXenStored(_dir.File("xs.sock"));
        ControlDirectory = _dir.File("ctl");
        Directory.CreateDirectory(ControlDirectory);
        if (realTapdisk)
        {
            Image = _dir.File("disk.raw");
            using (FileStream f = File.Create(Image))
            {
                f.SetLength(8 << 20);
            }

            ProcessResult created = TapCtl("create", "-a", "aio:" + Image).EnsureSuccess("tap-ctl create");
            Minor = int.Parse(created.StandardOutput.Trim()[(created.StandardOutput.Trim().LastIndexOf('-') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            string list = TapCtl("list", "-m", $"{Minor}").EnsureSuccess("tap-ctl list").StandardOutput;
            string pid = list.Split(' ', StringSplitOptions.RemoveEmptyEntries).Single(t => t.StartsWith("pid=", StringComparison.Ordinal))[4..];
            Pid = int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture);
        }
        else
        {
            Tapdisk = new FakeTapdisk(ControlDirectory, TapdiskPid, TapdiskMinor, DiskSectors, info: 0);
        }

        options.ControlDirectory = ControlDirectory;
        options.ControlTimeout = TimeSpan.FromSeconds(10);
        Options = options;
        _log = new ProcessLog("tapback", TapbackAgent.LogLinesPerWindow, syslog: false, stderr: _logText) { Verbose = true };
    }

    public TestXenStored Store { get; }

    /// <summary>The fake tapdisk; null when a real one serves <see cref="Image"/>.</summary>
    public FakeTapdisk? Tapdisk { get; }

    public FakeTapdisk Fake => Tapdisk ?? throw new InvalidOperationException("this harness runs a real tapdisk");

    public int Pid { get; } = TapdiskPid;

    public int Minor { get; } = TapdiskMinor;

    /// <summary>The raw image a real tapdisk serves.</summary>
    public string? Image { get; }

    public string ControlDirectory { get; }

    public TapbackOptions Options { get; }

    public string Log => _logText.ToString();

    /// <summary>The real tapback process, when started with <see cref="StartProcessAsync"/>.</summary>
    public Process? Process => _process;

    /// <summary>The agent in this process against the fake (or, with <paramref name="realTapdisk"/>, a real) tapdisk.</summary>
    public static async Task<TapbackHarness> StartAsync(TapbackOptions? options = null, bool realTapdisk = false)
    {
        var harness = new TapbackHarness(options ?? new TapbackOptions(), realTapdisk);
        harness._client = await XenStoreClient.ConnectAsync(new XenStoreClientOptions { Endpoints = [harness.Store.Endpoint], ReconnectMaximumDelay = TimeSpan.FromMilliseconds(200) });
        var agent = new TapbackAgent(harness._client, harness.Options, harness._log);
        harness._run = agent.RunAsync(harness._stop.Token);
        await agent.Started.WaitAsync(s_hangGuard);
        return harness;
    }

    /// <summary>The real tapback executable in the foreground (-d -v plus <paramref name="args"/>), finding the store through XENSTORED_PATH.</summary>
    public static async Task<TapbackHarness> StartProcessAsync(params string[] args)
    {
        var harness = new TapbackHarness(new TapbackOptions(), realTapdisk: false);
        var psi = new ProcessStartInfo(TestBinaries.Tapback) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in (string[])["-d", "-v", "--control-dir", harness.ControlDirectory, .. args])
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment[XenStoreEndpoint.PathVariable] = harness.Store.SocketPath;
        harness._process = System.Diagnostics.Process.Start(psi) ?? throw new InvalidOperationException("cannot start tapback");
        harness._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { harness._logText.WriteLine(e.Data); } };
        harness._process.OutputDataReceived += (_, e) => { if (e.Data is not null) { harness._logText.WriteLine(e.Data); } };
        harness._process.BeginErrorReadLine();
        harness._process.BeginOutputReadLine();
        await harness.WaitUntil(() => harness.Log.Contains("watching /local/domain/0/backend/vbd3", StringComparison.Ordinal), "tapback to start");
        return harness;
    }

    public ProcessResult TapCtl(params string[] args) => ExternalTool.Run(
        TestBinaries.TapCtl,
        args,
        stdin: null,
        timeout: TimeSpan.FromMinutes(1),
        environment: new Dictionary<string, string> { ["BLKTAP_CONTROL_DIR"] = ControlDirectory, ["TAPDISK_EXEC"] = TestBinaries.Tapdisk });

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
            ("pid", $"{Pid}"), ("minor", $"{Minor}"),
            ("physical-device-path", physicalDevicePath ?? Path.Combine(ControlDirectory, $"nbd{Pid}.{Minor}")),
            ("hotplug-status", "connected"));
    }

    /// <summary>What blkfront writes before Initialised: one ring page.</summary>
    public void FrontendPublishesRing(uint frontend, uint device, uint ringRef = 8, uint eventChannel = 17)
    {
        Store.WriteAll(Frontend(frontend, device), ("ring-ref", $"{ringRef}"), ("event-channel", $"{eventChannel}"));
    }

    public void FrontendState(uint frontend, uint device, int state) => Store.Write(Frontend(frontend, device) + "/state", $"{state}");

    /// <summary>
    /// A device taken to Connected the usual way: libxl adds it, block-tap hotplugs it, blkfront publishes one ring
    /// page and moves to <paramref name="frontendState"/> (Initialised or Connected); waits for backend Connected.
    /// </summary>
    public async Task ConnectDeviceAsync(uint frontend, uint device, int frontendState = 3)
    {
        AddDevice(frontend, device);
        Hotplug(frontend, device);
        FrontendPublishesRing(frontend, device);
        FrontendState(frontend, device, frontendState);
        await WaitBackendState(frontend, device, 4);
    }

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

        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process?.Dispose();
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }

        if (Tapdisk is not null)
        {
            await Tapdisk.DisposeAsync();
        }
        else
        {
            TapCtl("destroy", "-p", $"{Pid}", "-m", $"{Minor}");
        }

        Store.Dispose();
        _log.Dispose();
        _stop.Dispose();
        _dir.Dispose();
    }
}
