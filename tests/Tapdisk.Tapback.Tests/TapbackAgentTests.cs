using Tapdisk.Control;
using Tapdisk.XenStore;
using Xunit;

namespace Tapdisk.Tapback.Tests;

/// <summary>The agent end to end: test xenstored, fake tapdisk control socket, toolstack and frontend played by the test.</summary>
public sealed class TapbackAgentTests
{
    private const uint Fe = 5;
    private const uint Dev = 51712;

    [Fact]
    public async Task Handshake_ConnectsWithEveryFieldAndClosesOnFrontendClosed()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        await h.Settle();
        Assert.Equal("1", h.BackendKey(Fe, Dev, "state")); // gated on hotplug-status
        Assert.Equal("3", h.BackendKey(Fe, Dev, "max-ring-page-order"));

        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Equal("4242", h.BackendKey(Fe, Dev, "kthread-pid"));
        Assert.Equal($"{TapbackHarness.DiskSectors}", h.BackendKey(Fe, Dev, "sectors"));
        Assert.Equal("512", h.BackendKey(Fe, Dev, "sector-size"));
        Assert.Equal("0", h.BackendKey(Fe, Dev, "info"));
        Assert.Equal("1", h.BackendKey(Fe, Dev, "feature-flush-cache"));
        Assert.Equal("1", h.BackendKey(Fe, Dev, "feature-barrier"));
        Assert.Equal("1", h.BackendKey(Fe, Dev, "feature-discard"));
        Assert.Equal("4096", h.BackendKey(Fe, Dev, "discard-granularity"));
        Assert.Equal("0", h.BackendKey(Fe, Dev, "discard-alignment"));
        Assert.Equal("256", h.BackendKey(Fe, Dev, "feature-max-indirect-segments"));
        Assert.Null(h.BackendKey(Fe, Dev, "feature-persistent"));
        Assert.Equal("512", h.BackendKey(Fe, Dev, "physical-sector-size"));

        // Keys for the frontend: owned by the backend domain, readable by the frontend domain only.
        XenStorePermission[] expected = [new(XenStoreAccess.None, 0), new(XenStoreAccess.Read, Fe)];
        foreach (string key in new[] { "max-ring-page-order", "feature-flush-cache", "sectors", "sector-size", "info" })
        {
            Assert.Equal(expected, h.Store.Permissions(TapbackHarness.Backend(Fe, Dev) + "/" + key));
        }

        Assert.Empty(h.Fake.Connects);
        h.FrontendPublishesRing(Fe, Dev, ringRef: 8, eventChannel: 17);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);

        TapdiskMessage connect = Assert.Single(h.Fake.Connects);
        Assert.Equal(TapdiskMessageType.XenblkifConnect, connect.Type);
        Assert.Equal(TapbackHarness.TapdiskMinor, connect.Cookie);
        Assert.Equal(Fe, connect.BlkifDomid);
        Assert.Equal(Dev, connect.BlkifDevid);
        Assert.Equal(8u, connect.GetBlkifGref(0));
        for (int i = 1; i < 8; i++)
        {
            Assert.Equal(0u, connect.GetBlkifGref(i));
        }

        Assert.Equal(0u, connect.BlkifOrder);
        Assert.Equal(3u, connect.BlkifProto); // x86_64-abi
        Assert.Equal(string.Empty, connect.BlkifPool);
        Assert.Equal(17u, connect.BlkifPort);
        Assert.Equal(0u, connect.BlkifPollDuration);
        Assert.Equal(0u, connect.BlkifPollIdleThreshold);

        h.FrontendState(Fe, Dev, 4);
        await h.Settle();
        Assert.Single(h.Fake.Connects);

        h.FrontendState(Fe, Dev, 5);
        await h.WaitBackendState(Fe, Dev, 5);
        Assert.Empty(h.Fake.Disconnects);
        h.FrontendState(Fe, Dev, 6);
        await h.WaitBackendState(Fe, Dev, 6);
        TapdiskMessage disconnect = Assert.Single(h.Fake.Disconnects);
        Assert.Equal(Fe, disconnect.BlkifDomid);
        Assert.Equal(Dev, disconnect.BlkifDevid);
    }

    [Fact]
    public async Task MultiPageRing_ReadOnlyCdrom_PollingKeys_AreSent()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync(new TapbackOptions { Barrier = false, DiscardGranularity = 65536, MaxIndirectSegments = 32, PhysicalSectorSize = 4096 });
        h.AddDevice(Fe, Dev, mode: "r", deviceType: "cdrom");
        h.Store.WriteAll(TapbackHarness.Backend(Fe, Dev), ("polling-duration", "1000"), ("polling-idle-threshold", "50"));
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Equal("5", h.BackendKey(Fe, Dev, "info")); // VDISK_CDROM | VDISK_READONLY
        Assert.Equal("0", h.BackendKey(Fe, Dev, "feature-barrier"));
        Assert.Equal("1", h.BackendKey(Fe, Dev, "feature-discard"));
        Assert.Equal("65536", h.BackendKey(Fe, Dev, "discard-granularity"));
        Assert.Equal("32", h.BackendKey(Fe, Dev, "feature-max-indirect-segments"));
        Assert.Equal("4096", h.BackendKey(Fe, Dev, "physical-sector-size"));

        string fe = TapbackHarness.Frontend(Fe, Dev);
        h.Store.WriteAll(fe, ("ring-page-order", "2"), ("ring-ref0", "100"), ("ring-ref1", "101"), ("ring-ref2", "102"), ("ring-ref3", "103"), ("event-channel", "9"), ("protocol", "x86_32-abi"));
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
        TapdiskMessage connect = Assert.Single(h.Fake.Connects);
        Assert.Equal(2u, connect.BlkifOrder);
        Assert.Equal([100u, 101u, 102u, 103u, 0u, 0u, 0u, 0u], Enumerable.Range(0, 8).Select(connect.GetBlkifGref));
        Assert.Equal(2u, connect.BlkifProto); // x86_32-abi
        Assert.Equal(9u, connect.BlkifPort);
        Assert.Equal(1000u, connect.BlkifPollDuration);
        Assert.Equal(50u, connect.BlkifPollIdleThreshold);
    }

    [Theory]
    [InlineData("0", 4096u, 0u)]
    [InlineData("1", 0u, 16u)]
    [InlineData("1", 0u, 1000u)]
    public async Task DiscardAndIndirect_FollowDiscardEnableAndOptions(string discardEnable, uint granularity, uint indirect)
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync(new TapbackOptions { DiscardGranularity = granularity, MaxIndirectSegments = indirect });
        h.Store.Write(TapbackHarness.Backend(Fe, Dev) + "/discard-enable", discardEnable);
        h.AddDevice(Fe, Dev);
        await h.WaitUntil(() => h.BackendKey(Fe, Dev, "max-ring-page-order") is not null, "the features");
        Assert.Null(h.BackendKey(Fe, Dev, "feature-discard"));
        Assert.Null(h.BackendKey(Fe, Dev, "discard-granularity"));
        Assert.Equal(indirect == 0 ? null : $"{Math.Min(indirect, 256)}", h.BackendKey(Fe, Dev, "feature-max-indirect-segments"));
    }

    [Fact]
    public async Task MissingProtocol_MeansNativeX86_64()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Store.Remove(TapbackHarness.Frontend(Fe, Dev) + "/protocol");
        h.Hotplug(Fe, Dev);
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
        Assert.Equal(3u, Assert.Single(h.Fake.Connects).BlkifProto);
    }

    [Theory]
    [InlineData("ring-page-order", "9", "exceeds the advertised maximum")]
    [InlineData("ring-page-order", "-1", "unparsable ring-page-order")]
    [InlineData("ring-page-order", "1", "missing ring-ref1")]
    [InlineData("ring-ref", "12abc", "unparsable ring-ref")]
    [InlineData("ring-ref", "99999999999", "unparsable ring-ref")]
    [InlineData("event-channel", "0", "bad event-channel")]
    [InlineData("event-channel", " 17", "bad event-channel")]
    [InlineData("protocol", "sparc-abi", "unknown protocol 'sparc-abi'")]
    [InlineData("num-ring-pages", "3", "is not a power of two")]
    public async Task HostileFrontendKeys_DoNotConnect_ThenAFixedFrontendDoes(string key, string value, string logged)
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        string fe = TapbackHarness.Frontend(Fe, Dev);
        h.FrontendPublishesRing(Fe, Dev);
        if (key == "ring-page-order" && value == "1")
        {
            h.Store.Write(fe + "/ring-ref0", "8");
        }

        if (key == "num-ring-pages")
        {
            h.Store.Remove(fe + "/ring-page-order");
        }

        h.Store.Write(fe + "/" + key, value);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains(logged, StringComparison.Ordinal), $"the log line '{logged}'");
        await h.Settle();
        Assert.Empty(h.Fake.Connects);
        Assert.Equal("2", h.BackendKey(Fe, Dev, "state"));

        // The device is not written off: a frontend that republishes good keys gets connected.
        h.Store.Remove(fe + "/ring-page-order");
        h.Store.Remove(fe + "/num-ring-pages");
        h.Store.Write(fe + "/protocol", "x86_64-abi");
        h.FrontendPublishesRing(Fe, Dev, ringRef: 8, eventChannel: 17);
        h.FrontendState(Fe, Dev, 4);
        await h.WaitBackendState(Fe, Dev, 4);
        Assert.Equal(8u, Assert.Single(h.Fake.Connects).GetBlkifGref(0));
    }

    [Fact]
    public async Task HugeRingRefCount_IsRefusedWithoutReadingThem()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        string fe = TapbackHarness.Frontend(Fe, Dev);
        var keys = new List<(string, string)> { ("ring-page-order", "8"), ("event-channel", "17") };
        keys.AddRange(Enumerable.Range(0, 256).Select(i => ($"ring-ref{i}", $"{1000 + i}")));
        h.Store.WriteAll(fe, [.. keys]);
        int readsBefore = h.Store.Requests.Count(r => r.Payload.Contains("ring-ref", StringComparison.Ordinal));
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains("ring-page-order 8 exceeds", StringComparison.Ordinal), "the refusal");
        await h.Settle();
        Assert.Empty(h.Fake.Connects);
        Assert.Equal(readsBefore, h.Store.Requests.Count(r => r.Payload.Contains("ring-ref", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("state", "garbage")]
    [InlineData("state", "99")]
    public async Task GarbledFrontendState_IsLoggedAndIgnored(string key, string value)
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        h.FrontendPublishesRing(Fe, Dev);
        h.Store.Write(TapbackHarness.Frontend(Fe, Dev) + "/" + key, value);
        await h.WaitUntil(() => h.Log.Contains("is not a xenbus state", StringComparison.Ordinal), "the log line");
        Assert.Empty(h.Fake.Connects);
        Assert.Equal("2", h.BackendKey(Fe, Dev, "state"));
    }

    [Fact]
    public async Task BadToolstackKeys_DoNotConnect()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev, mode: "x");
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains("unsupported mode 'x'", StringComparison.Ordinal), "the log line");
        Assert.Empty(h.Fake.Connects);
    }

    [Fact]
    public async Task GarbledPhysicalDevicePath_WaitsUntilFixed()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev, physicalDevicePath: "/run/blktap-control/nbdX.3");
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains("is not <dir>/nbd<pid>.<minor>", StringComparison.Ordinal), "the log line");
        await h.Settle();
        Assert.Empty(h.Fake.Connects);
        Assert.Null(h.BackendKey(Fe, Dev, "kthread-pid"));

        // A path naming a tapdisk that does not exist: still waiting, quietly.
        h.Store.Write(TapbackHarness.Backend(Fe, Dev) + "/physical-device-path", Path.Combine(h.ControlDirectory, "nbd999999.3"));
        await h.WaitUntil(() => h.Log.Contains("no tapdisk 999999 minor 3", StringComparison.Ordinal), "the log line");
        Assert.Empty(h.Fake.Connects);

        h.Store.Write(TapbackHarness.Backend(Fe, Dev) + "/physical-device-path", Path.Combine(h.ControlDirectory, $"nbd{TapbackHarness.TapdiskPid}.{TapbackHarness.TapdiskMinor}"));
        await h.WaitBackendState(Fe, Dev, 4);
        Assert.Single(h.Fake.Connects);
    }

    [Fact]
    public async Task WrongMinor_IsNotServed()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev, physicalDevicePath: Path.Combine(h.ControlDirectory, $"nbd{TapbackHarness.TapdiskPid}.7"));
        await h.WaitUntil(() => h.Log.Contains("has no minor 7", StringComparison.Ordinal), "the LIST check");
        Assert.Null(h.BackendKey(Fe, Dev, "sectors"));
    }

    [Fact]
    public async Task TapdiskRefusesConnect_StaysInitWait_EalreadyCountsAsConnected()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.Fake.ConnectErrno = 38; // ENOSYS: a tapdisk built without the ring backend
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitUntil(() => h.Log.Contains("did not connect the ring", StringComparison.Ordinal), "the refusal");
        await h.Settle();
        Assert.Equal("2", h.BackendKey(Fe, Dev, "state"));

        // A tapdisk that already holds this ring (tapback restarted) answers EALREADY: that is a connected device.
        h.Fake.ConnectErrno = 114;
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
    }

    [Fact]
    public async Task EventsForOneDevice_QueuedTogether_AreReconciledOnce()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        string hotplugStatus = TapbackHarness.Backend(Fe, Dev) + "/hotplug-status";
        int Reconciles() => h.Store.Requests.Count(r => r.Type == XenStoreMessageType.Read && r.Payload.TrimEnd('|') == hotplugStatus);

        // Hold the agent inside the device's first reconcile (DISK_INFO unanswered) while 20 more events for the
        // device queue up: each reconcile reads hotplug-status once, so 20 of them would show as 20 reads.
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Fake.DiskInfoGate = gate.Task;
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitUntil(() => h.Fake.DiskInfoRequests > 0, "the agent to ask tapdisk for DISK_INFO");
        int before = Reconciles();
        for (int i = 0; i < 20; i++)
        {
            h.Store.Write(TapbackHarness.Backend(Fe, Dev) + "/bootable", $"{i % 2}");
        }

        // Time for the events to reach the agent's queue (a wait, not a timing assertion: events that arrive late
        // form a second batch, still far from 20).
        await Task.Delay(TimeSpan.FromSeconds(1));
        gate.SetResult();
        h.Fake.DiskInfoGate = null;
        await h.WaitBackendState(Fe, Dev, 2);
        await h.Settle();
        Assert.InRange(Reconciles() - before, 1, 4);

        // And the device still connects.
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
    }

    [Fact]
    public async Task FlappingFrontend_NeverDoubleConnects()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        await h.ConnectDeviceAsync(Fe, Dev);
        h.FrontendState(Fe, Dev, 4);
        h.FrontendState(Fe, Dev, 3);
        h.FrontendState(Fe, Dev, 4);
        await h.Settle();
        Assert.Single(h.Fake.Connects);

        // Back to Initialising (guest reboot): the old ring is dropped before InitWait, then a new one connects.
        h.FrontendState(Fe, Dev, 1);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Single(h.Fake.Disconnects);
        h.FrontendPublishesRing(Fe, Dev, ringRef: 9, eventChannel: 18);
        h.FrontendState(Fe, Dev, 3);
        await h.WaitBackendState(Fe, Dev, 4);
        Assert.Equal(2, h.Fake.Connects.Count);
        Assert.Equal(9u, h.Fake.Connects[1].GetBlkifGref(0));

        h.FrontendState(Fe, Dev, 6);
        await h.WaitBackendState(Fe, Dev, 6);
        h.FrontendState(Fe, Dev, 6);
        await h.Settle();
        Assert.Equal(2, h.Fake.Disconnects.Count);
        Assert.Equal(h.Fake.Connects.Count, h.Fake.Disconnects.Count);
    }

    [Fact]
    public async Task FrontendVanishes_DropsTheRing_LeavesBackendToTheToolstack()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        await h.ConnectDeviceAsync(Fe, Dev);
        int watches = h.Store.WatchCount;

        h.Store.Remove(TapbackHarness.Frontend(Fe, Dev));
        await h.WaitUntil(() => h.Fake.Disconnects.Count == 1, "DISCONNECT");

        // block-tap remove still needs pid and minor from the backend directory; the toolstack removes it.
        await h.Settle();
        Assert.Equal($"{TapbackHarness.TapdiskMinor}", h.BackendKey(Fe, Dev, "minor"));
        h.Store.Remove(TapbackHarness.Backend(Fe, Dev));
        await h.WaitUntil(() => h.Store.WatchCount == watches - 1, "the frontend watch to go");
        Assert.Single(h.Fake.Disconnects);
        Assert.False(h.Store.Exists(TapbackHarness.Backend(Fe, Dev)));
    }

    [Fact]
    public async Task LibxlDetach_OnlineZeroAndClosing_IsNotUndone()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        await h.ConnectDeviceAsync(Fe, Dev, frontendState: 4);

        // libxl: online=0 and state=5 in one transaction; the backend must not write Connected back over it.
        h.Store.WriteAll(TapbackHarness.Backend(Fe, Dev), ("online", "0"), ("state", "5"));
        await h.Settle();
        Assert.Equal("5", h.BackendKey(Fe, Dev, "state"));

        // blkfront answers Closing with Closed; the ring goes and the backend reaches Closed, which libxl waits for.
        h.FrontendState(Fe, Dev, 6);
        await h.WaitBackendState(Fe, Dev, 6);
        Assert.Single(h.Fake.Disconnects);

        // The toolstack's teardown then removes the frontend and the backend: no stray node is recreated.
        h.Store.Remove(TapbackHarness.Frontend(Fe, Dev));
        h.Store.Remove(TapbackHarness.Backend(Fe, Dev));
        await h.Settle();
        Assert.False(h.Store.Exists(TapbackHarness.Backend(Fe, Dev)));
        Assert.Single(h.Fake.Connects);
    }

    [Fact]
    public async Task ToolstackRemovesDevice_Disconnects()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        await h.ConnectDeviceAsync(Fe, Dev);
        h.Store.Remove($"/local/domain/0/backend/vbd3/{Fe}");
        await h.WaitUntil(() => h.Fake.Disconnects.Count == 1, "DISCONNECT");
        await h.WaitUntil(() => h.Log.Contains("removed (backend directory removed)", StringComparison.Ordinal), "the device record to go");
    }

    [Fact]
    public async Task FrontendDomainDies_Disconnects()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.AddDevice(6, Dev);
        h.Hotplug(Fe, Dev);
        h.Hotplug(6, Dev);
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendPublishesRing(6, Dev);
        h.FrontendState(Fe, Dev, 4);
        h.FrontendState(6, Dev, 4);
        await h.WaitBackendState(Fe, Dev, 4);
        await h.WaitBackendState(6, Dev, 4);

        h.Store.ReleaseDomain(Fe);
        await h.WaitUntil(() => h.Fake.Disconnects.Count == 1, "DISCONNECT");
        Assert.Equal(Fe, h.Fake.Disconnects[0].BlkifDomid);
    }

    [Fact]
    public async Task OneHostileDevice_DoesNotStopAnother()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.AddDevice(Fe, 51728);
        h.Hotplug(Fe, Dev);
        h.Hotplug(Fe, 51728);
        await h.WaitBackendState(Fe, Dev, 2);
        await h.WaitBackendState(Fe, 51728, 2);
        h.Store.Write(TapbackHarness.Frontend(Fe, Dev) + "/protocol", new string('z', 3000));
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendPublishesRing(Fe, 51728, ringRef: 20, eventChannel: 21);
        h.FrontendState(Fe, Dev, 3);
        h.FrontendState(Fe, 51728, 3);
        await h.WaitBackendState(Fe, 51728, 4);
        Assert.Equal(51728u, Assert.Single(h.Fake.Connects).BlkifDevid);
        Assert.Equal("2", h.BackendKey(Fe, Dev, "state"));
    }

    [Fact]
    public async Task XenstoredRestartMidHandshake_Recovers()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);

        h.Store.Stop();
        await h.WaitUntil(() => h.Log.Contains("connection to xenstored lost", StringComparison.Ordinal), "the loss to be seen");

        // While xenstored is down the frontend moves on (its writes land when the store is back, as with a live update).
        h.FrontendPublishesRing(Fe, Dev);
        h.FrontendState(Fe, Dev, 3);
        h.Store.Start();
        await h.WaitBackendState(Fe, Dev, 4);
        Assert.Single(h.Fake.Connects);

        // And the re-registered watches keep working.
        h.FrontendState(Fe, Dev, 6);
        await h.WaitBackendState(Fe, Dev, 6);
        Assert.Single(h.Fake.Disconnects);
    }

    [Fact]
    public async Task FrontendWrittenAfterBackend_IsNotMistakenForGone()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.Store.WriteAll(
            TapbackHarness.Backend(Fe, Dev),
            ("frontend", TapbackHarness.Frontend(Fe, Dev)), ("frontend-id", $"{Fe}"), ("state", "1"), ("mode", "w"), ("device-type", "disk"));
        h.Hotplug(Fe, Dev);
        await h.Settle();
        Assert.True(h.Store.Exists(TapbackHarness.Backend(Fe, Dev)));
        h.Store.WriteAll(TapbackHarness.Frontend(Fe, Dev), ("backend", TapbackHarness.Backend(Fe, Dev)), ("state", "1"));
        await h.WaitBackendState(Fe, Dev, 2);
    }

    [Fact]
    public async Task OnlyTheGivenDomain_IsServedWithX()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync(new TapbackOptions { FrontendDomain = 6 });
        h.AddDevice(Fe, Dev);
        h.AddDevice(6, Dev);
        h.Hotplug(Fe, Dev);
        h.Hotplug(6, Dev);
        await h.WaitBackendState(6, Dev, 2);
        await h.Settle();
        Assert.Equal("1", h.BackendKey(Fe, Dev, "state"));
    }

    [Fact]
    public async Task PublishConflicts_AreRetried()
    {
        await using TapbackHarness h = await TapbackHarness.StartAsync();
        h.Store.ForcedConflicts = 3;
        h.AddDevice(Fe, Dev);
        h.Hotplug(Fe, Dev);
        await h.WaitBackendState(Fe, Dev, 2);
        Assert.Equal(3, h.Store.ConflictedTransactions);
        Assert.Equal("3", h.BackendKey(Fe, Dev, "max-ring-page-order"));
    }
}
