using Tapdisk.Abi;
using Tapdisk.Blkif;
using Tapdisk.Drivers.Raw;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Tapdisk.Testing.Xen;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

/// <summary>
/// The per-VBD backend as both frontends use it in one process: its gate, its worker share, its in-flight count and
/// statistics, and the driver table's filter rows. Lives here because it needs the NBD test client and the blkif test
/// frontend together.
/// </summary>
public sealed class BlockBackendTests
{
    private const long Size = 4L * 1024 * 1024;
    private static readonly TimeSpan s_timeout = NbdTestClient.Timeout;

    [Fact]
    public async Task Dispatch_OneVbdStorageHung_OtherVbdKeepsServingNbdAndRing()
    {
        // A private pool of 2 threads; each VBD reserves a share of 2, so the pool may grow to 4 and no more.
        var pool = new IoWorkerPool(2, "share-test");
        var gate = new GateFilter(new MemoryImage(Size));
        var healthyImage = new MemoryImage(Size);
        await healthyImage.WriteAsync(0, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        using var hung = new BlockBackend(gate, new BlockBackendOptions { Name = "hung", IoWorkers = pool, WorkerShare = 2 });
        using var healthy = new BlockBackend(healthyImage, new BlockBackendOptions { Name = "healthy", IoWorkers = pool, WorkerShare = 2 });
        using var xen = new FakeXen();
        using var hungFront = new TestFrontend(xen, BlkifProtocol.X64, 0, devid: 1);
        using var healthyFront = new TestFrontend(xen, BlkifProtocol.X64, 0, devid: 2);
        BlkifRing hungRing = BlkifRing.Connect(hungFront.Parameters, xen, hung);
        BlkifRing healthyRing = BlkifRing.Connect(healthyFront.Parameters, xen, healthy);
        try
        {
            await using var hungClient = new NbdTestClient(new NbdServer(new NbdExport("hung", "", hung)));
            await using var healthyClient = new NbdTestClient(new NbdServer(new NbdExport("healthy", "", healthy)));
            await hungClient.NegotiateAsync(structured: false);
            await healthyClient.NegotiateAsync(structured: false);

            // Six requests queued at the hung VBD: three on its NBD connection, three on its ring.
            for (ulong i = 0; i < 3; i++)
            {
                await hungClient.SendRequestAsync(CmdWrite, i, i * 4096, 4096, 0, new byte[4096]);
                hungFront.QueueRequest(BlkifConstants.OpRead, 100 + i, i * 8, [ReadSegment(hungFront)]);
            }

            hungFront.Push();
            gate.WaitForEntered(2, s_timeout);
            Assert.True(SpinWait.SpinUntil(() => hung.InFlight == 6, s_timeout), $"hung VBD in flight {hung.InFlight}");

            // The healthy VBD is served over both frontends while the hung one holds its whole share.
            await healthyClient.SendRequestAsync(CmdRead, 7, 0, 4096);
            Assert.Equal((0u, 7ul), await healthyClient.ReadSimpleReplyAsync().WaitAsync(s_timeout));
            Assert.Equal(Enumerable.Repeat((byte)0x5a, 4096), await healthyClient.ReadExactAsync(4096).WaitAsync(s_timeout));
            (int page, uint gref) = healthyFront.AllocateDataPage();
            healthyFront.QueueRequest(BlkifConstants.OpRead, 9, 0, [new BlkifSegment { Gref = gref, FirstSect = 0, LastSect = 7 }]);
            healthyFront.Push();
            Assert.Equal(BlkifConstants.RspOkay, healthyFront.WaitForResponses(1, s_timeout).Single().Status);
            Assert.Equal(0x5a, xen.Page(page)[4095]);
            Assert.Equal(2, gate.Entered);

            // Released, everything queued at the hung VBD completes.
            gate.Release();
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(0u, (await hungClient.ReadSimpleReplyAsync().WaitAsync(s_timeout)).Error);
            }

            Assert.All(hungFront.WaitForResponses(3, s_timeout), r => Assert.Equal(BlkifConstants.RspOkay, r.Status));
            Assert.True(SpinWait.SpinUntil(() => hung.InFlight == 0, s_timeout));
            Assert.Equal(6, gate.Entered);
        }
        finally
        {
            gate.Release();
            await hungRing.DisconnectAsync();
            await healthyRing.DisconnectAsync();
        }
    }

    [Fact]
    public async Task Ring_HoldsItsRingSizeInFlight_WhileStorageServesTwo()
    {
        var gate = new GateFilter(new MemoryImage(Size));
        using var backend = new BlockBackend(gate, new BlockBackendOptions { Name = "ring", WorkerShare = 2 });
        using var xen = new FakeXen();
        using var front = new TestFrontend(xen, BlkifProtocol.X64, 0);
        BlkifRing ring = BlkifRing.Connect(front.Parameters, xen, backend);
        try
        {
            for (ulong i = 0; i < (ulong)front.SlotCount; i++)
            {
                front.QueueRequest(BlkifConstants.OpRead, i, i * 8, [ReadSegment(front)]);
            }

            front.Push();

            // Every request is taken off the ring and held in the gate while only the share of two is at the storage.
            Assert.True(SpinWait.SpinUntil(() => backend.InFlight == front.SlotCount, s_timeout), $"in flight {backend.InFlight}");
            gate.WaitForEntered(2, s_timeout);
            gate.Release();
            Assert.All(front.WaitForResponses(front.SlotCount, s_timeout), r => Assert.Equal(BlkifConstants.RspOkay, r.Status));
            Assert.True(SpinWait.SpinUntil(() => backend.InFlight == 0, s_timeout));
            Assert.Equal(front.SlotCount * 8L, backend.ReadSectors);
        }
        finally
        {
            gate.Release();
            await ring.DisconnectAsync();
        }
    }

    [Fact]
    public async Task Statistics_InFlightUnderLoad_CountersSurvivePauseAndResume()
    {
        var gate = new GateFilter(new MemoryImage(Size));
        using var backend = new BlockBackend(gate, new BlockBackendOptions { Name = "stats" });
        await using var client = new NbdTestClient(new NbdServer(new NbdExport("x", "", backend)));
        await client.NegotiateAsync(structured: false);
        for (ulong i = 0; i < 3; i++)
        {
            await client.SendRequestAsync(CmdWrite, i, i * 4096, 4096, 0, new byte[4096]);
        }

        Assert.True(SpinWait.SpinUntil(() => backend.InFlight == 3, s_timeout), $"in flight {backend.InFlight}");
        Task pause = backend.PauseAsync();
        Assert.False(pause.IsCompleted);
        gate.Release();
        await pause.WaitAsync(s_timeout);
        Assert.Equal(0, backend.InFlight);
        Assert.Equal(24, backend.WriteSectors);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(0u, (await client.ReadSimpleReplyAsync().WaitAsync(s_timeout)).Error);
        }

        // The snapshot swap: the counters belong to the VBD, not to the stack that was closed.
        await backend.CloseImageAsync();
        var next = new MemoryImage(Size);
        backend.Resume(next);
        Assert.Equal(24, backend.WriteSectors);
        await client.SendRequestAsync(CmdRead, 9, 0, 4096);
        Assert.Equal((0u, 9ul), await client.ReadSimpleReplyAsync().WaitAsync(s_timeout));
        await client.ReadExactAsync(4096).WaitAsync(s_timeout);
        Assert.Equal(8, backend.ReadSectors);
        Assert.Equal(24, backend.WriteSectors);
    }

    [Fact]
    public async Task DiskTypeTable_TestFilterRow_StacksAboveTheChainWithoutOtherEdits()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.raw");
        using (FileStream f = File.Create(path))
        {
            f.SetLength(Size);
        }

        CountingFilter? counting = null;
        DiskTypeTable table = new DiskTypeTable(
                new DiskType(0, "aio", "raw image (aio)", LayerKind.Image, new RawImageDriver()),
                new DiskType(9, "log", "write logger", LayerKind.Filter))
            .With(new DiskType(100, "test-count", "counts requests", LayerKind.Filter, Filter: next => counting = new CountingFilter(next)));

        // A row without a factory is a filter this build lacks: refused, never skipped.
        ImageOpenException refused = Assert.Throws<ImageOpenException>(() => table.OpenStack($"aio:{path}", ImageOpenOptions.ReadWrite, ["log"]));
        Assert.Equal(Errno.ENOSYS, refused.Errno);

        IBlockImage stack = table.OpenStack($"aio:{path}", ImageOpenOptions.ReadWrite, ["test-count"]);
        Assert.Equal(LayerKind.Filter, stack.Kind);
        Assert.Equal("test-count", stack.DriverName);
        Assert.Equal(LayerKind.Image, stack.Parent!.Kind);
        Assert.Equal(100, table.Id(stack.DriverName));
        using var backend = new BlockBackend(stack);
        await using (var client = new NbdTestClient(new NbdServer(new NbdExport("x", "", backend))))
        {
            await client.NegotiateAsync(structured: false);
            await client.SendRequestAsync(CmdWrite, 1, 512, 1000, 0, Enumerable.Repeat((byte)7, 1000).ToArray());
            Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync().WaitAsync(s_timeout));
            await client.SendRequestAsync(CmdRead, 2, 512, 1000);
            Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync().WaitAsync(s_timeout));
            Assert.Equal(Enumerable.Repeat((byte)7, 1000), await client.ReadExactAsync(1000).WaitAsync(s_timeout));
        }

        // The unaligned write went through the block-size layer above the filter: a read-modify-write of whole blocks.
        Assert.NotNull(counting);
        Assert.Equal(1, counting.Writes);
        Assert.True(counting.Reads >= 2);
        await backend.CloseImageAsync();
    }

    [Fact]
    public async Task Dispatch_ItemThrows_WorkerAndShareSurviveForTheNext()
    {
        // One worker, a share of one: if the throw escaped, the test host would die; if the share leaked, the second
        // item would never run.
        var pool = new IoWorkerPool(1, "throw-test");
        using var backend = new BlockBackend(new MemoryImage(Size), new BlockBackendOptions { Name = "throws", IoWorkers = pool, WorkerShare = 1 });
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        backend.Dispatch(new WorkItem(() => throw new InvalidOperationException("a frontend bug")));
        backend.Dispatch(new WorkItem(done.SetResult));
        await done.Task.WaitAsync(s_timeout);
    }

    private sealed class WorkItem(Action action) : IThreadPoolWorkItem
    {
        public void Execute() => action();
    }

    private static BlkifSegment ReadSegment(TestFrontend front)
    {
        (_, uint gref) = front.AllocateDataPage();
        return new BlkifSegment { Gref = gref, FirstSect = 0, LastSect = 7 };
    }
}
