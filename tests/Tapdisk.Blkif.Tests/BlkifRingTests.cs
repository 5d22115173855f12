using Tapdisk.Abi;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Tapdisk.Testing.Xen;
using Xunit;

namespace Tapdisk.Blkif.Tests;

public sealed class BlkifRingTests
{
    private const long DiskBytes = 16L * 1024 * 1024;
    private const int SpreadPages = 80;

    [Theory]
    [InlineData(BlkifProtocol.X64, 0)]
    [InlineData(BlkifProtocol.X86, 0)]
    [InlineData(BlkifProtocol.Native, 1)]
    [InlineData(BlkifProtocol.X86, 2)]
    [InlineData(BlkifProtocol.X64, 3)]
    public async Task ReadWrite_RawFile_RoundTripsAndReachesTheFile(BlkifProtocol protocol, int order)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.raw");
        File.WriteAllBytes(path, new byte[DiskBytes]);
        IBlockImage image = new ImageOpener(new RawImageDriver()).Open("aio", path, new ImageOpenOptions { ReadOnly = false, DirectIo = false });
        byte[] data = RingHarness.Pattern(11 * 4096, 1);
        await using (var h = new RingHarness(image, protocol, order))
        {
            Assert.Equal(32 << order, h.Ring.Geometry.SlotCount);
            Assert.Equal(BlkifConstants.RspOkay, h.Write(2048, data));
            Assert.Equal(data, h.Read(2048, data.Length, firstPage: 20));
        }

        image.Dispose();
        byte[] onDisk = new byte[data.Length];
        using (FileStream f = File.OpenRead(path))
        {
            f.Position = 2048 * 512;
            f.ReadExactly(onDisk);
        }

        Assert.Equal(data, onDisk);
    }

    [Fact]
    public async Task ReadWrite_DynamicVhd_RoundTripsAndReopens()
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.vhd");
        VhdCreator.CreateDynamic(path, DiskBytes);
        var opener = new ImageOpener(new RawImageDriver(), new VhdImageDriver());
        byte[] data = RingHarness.Pattern(3 * 4096, 2);
        IBlockImage image = opener.Open("vhd", path, new ImageOpenOptions { ReadOnly = false, DirectIo = false });
        await using (var h = new RingHarness(image))
        {
            Assert.Equal(BlkifConstants.RspOkay, h.Write(4096 + 8, data));
            Assert.Equal(data, h.Read(4096 + 8, data.Length, firstPage: 20));
            Assert.Equal(new byte[4096], h.Read(0, 4096, firstPage: 40));
        }

        await image.DisposeAsync();
        using IBlockImage reopened = opener.Open("vhd", path, ImageOpenOptions.ReadOnlyDefault);
        byte[] back = new byte[data.Length];
        await reopened.ReadAsync((4096 + 8) * 512L, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task PartialSegments_SectorsInsidePages_MapToContiguousDiskRange()
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image);
        byte[] expected = RingHarness.Pattern(3 * 512 + 2 * 512, 3);

        // Segment 0: sectors 5..7 of page 0; segment 1: sectors 0..1 of page 1.
        expected.AsSpan(0, 1536).CopyTo(h.Frontend.PageSpan(h.Data(0).Page)[(5 * 512)..]);
        expected.AsSpan(1536).CopyTo(h.Frontend.PageSpan(h.Data(1).Page));
        BlkifSegment[] segs =
        [
            new() { Gref = h.Data(0).Gref, FirstSect = 5, LastSect = 7 },
            new() { Gref = h.Data(1).Gref, FirstSect = 0, LastSect = 1 },
        ];
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpWrite, 100, segs));

        byte[] back = new byte[expected.Length];
        await image.ReadAsync(100 * 512, back);
        Assert.Equal(expected, back);

        // Reading back into the same shape puts the bytes where the segments say, and nowhere else.
        h.Frontend.PageSpan(h.Data(0).Page).Fill(0xAA);
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpRead, 100, segs));
        Assert.True(h.Frontend.PageSpan(h.Data(0).Page)[..(5 * 512)].IndexOfAnyExcept((byte)0xAA) < 0);
        Assert.Equal(expected.AsSpan(0, 1536).ToArray(), h.Frontend.PageSpan(h.Data(0).Page)[(5 * 512)..].ToArray());
    }

    [Fact]
    public async Task Flush_CallsImageFlush_AndBarrierFlushesAroundItsData()
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image);
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpFlushDiskcache, 0, []));
        Assert.Equal(1, image.FlushCount);

        // An empty barrier is one flush; a barrier with data is flush, write, flush (not the reference's no-op).
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpWriteBarrier, 0, []));
        Assert.Equal(2, image.FlushCount);
        byte[] data = RingHarness.Pattern(4096, 4);
        h.Fill(0, data);
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpWriteBarrier, 8, h.Segments(0, 4096)));
        Assert.Equal(4, image.FlushCount);
        Assert.Equal(data, h.Read(8, 4096, firstPage: 10));
    }

    [Fact]
    public async Task Flush_EmptyWithSectorPastTheEnd_IsAFlushNotAnError()
    {
        // Linux blkfront's empty flushes carry an arbitrary sector_number; failing one disables its flushes for good.
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image);
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpFlushDiskcache, ulong.MaxValue, []));
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpWriteBarrier, (ulong)(DiskBytes / 512) + 8, []));
        Assert.Equal(2, image.FlushCount);
    }

    [Fact]
    public async Task Discard_TrimsTheImage_ZeroLengthIsOkay_BeyondTheEndFails()
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image);
        Assert.Equal(BlkifConstants.RspOkay, h.Write(0, RingHarness.Pattern(8192, 5)));

        ulong id = h.NextId();
        h.Frontend.QueueDiscard(id, 0, 16);
        h.Frontend.QueueDiscard(id + 1, 0, 0);
        h.Frontend.QueueDiscard(id + 2, (ulong)(DiskBytes / 512) - 1, 2);
        h.Frontend.QueueDiscard(id + 3, ulong.MaxValue - 1, 4);
        h.Frontend.Push();
        var byId = h.Frontend.WaitForResponses(4).ToDictionary(r => r.Id);
        Assert.Equal(BlkifConstants.RspOkay, byId[id].Status);
        Assert.Equal(BlkifConstants.OpDiscard, byId[id].Operation);
        Assert.Equal(BlkifConstants.RspOkay, byId[id + 1].Status);
        Assert.Equal(BlkifConstants.RspError, byId[id + 2].Status);
        Assert.Equal(BlkifConstants.RspError, byId[id + 3].Status);
        Assert.Equal(new byte[8192], h.Read(0, 8192));
    }

    [Fact]
    public async Task Discard_ImageWithoutTrim_IsEopnotsupp()
    {
        var image = new MemoryImage(DiskBytes, readOnly: true);
        await using var h = new RingHarness(image);
        ulong id = h.NextId();
        h.Frontend.QueueDiscard(id, 0, 8);
        h.Frontend.Push();
        Assert.Equal(new BlkifTestResponse(id, BlkifConstants.OpDiscard, BlkifConstants.RspEopnotsupp), h.Frontend.WaitForResponses(1).Single());
    }

    [Theory]
    [InlineData(BlkifProtocol.X64, 40, 64)]
    [InlineData(BlkifProtocol.X86, 40, 64)]
    [InlineData(BlkifProtocol.X64, 600, 600)]
    public async Task Indirect_WriteThenRead_MovesEverySegment(BlkifProtocol protocol, int segments, int maxSegments)
    {
        var image = new MemoryImage(64L * 1024 * 1024);
        await using var h = new RingHarness(image, protocol, options: new BlkifRingOptions { MaxIndirectSegments = maxSegments });
        int indirectPages = (segments + 511) / 512;

        // Segments of one sector each, spread over the data pages (the same page may back several segments).
        var descriptors = new BlkifSegment[segments];
        byte[] expected = new byte[segments * 512];
        for (int i = 0; i < segments; i++)
        {
            (int page, uint gref) = h.Data(i % SpreadPages);
            byte sector = (byte)((i / SpreadPages) % 8);
            descriptors[i] = new BlkifSegment { Gref = gref, FirstSect = sector, LastSect = sector };
        }

        // Unique page/sector pairs only for the write, so the data is well defined.
        var seen = new HashSet<(int, byte)>();
        for (int i = 0; i < segments; i++)
        {
            Assert.True(seen.Add((i % SpreadPages, descriptors[i].FirstSect)), "test layout reuses a sector");
            byte[] chunk = RingHarness.Pattern(512, 1000 + i);
            chunk.CopyTo(h.Frontend.PageSpan(h.Data(i % SpreadPages).Page)[(descriptors[i].FirstSect * 512)..]);
            chunk.CopyTo(expected, i * 512);
        }

        uint[] indirectGrefs = new uint[indirectPages];
        for (int p = 0; p < indirectPages; p++)
        {
            (int page, uint gref) = h.Frontend.AllocateDataPage(readOnly: true);
            int count = Math.Min(512, segments - (p * 512));
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(descriptors.AsSpan(p * 512, count)).CopyTo(h.Frontend.PageSpan(page));
            indirectGrefs[p] = gref;
        }

        ulong id = h.NextId();
        h.Frontend.QueueIndirect(BlkifConstants.OpWrite, id, 64, (ushort)segments, indirectGrefs);
        h.Frontend.Push();
        // The response names indirect_op, as blkfront requires (tests/xenlab/FINDINGS.md 1).
        Assert.Equal(new BlkifTestResponse(id, BlkifConstants.OpWrite, BlkifConstants.RspOkay), h.Frontend.WaitForResponses(1).Single());
        byte[] back = new byte[expected.Length];
        await image.ReadAsync(64 * 512, back);
        Assert.Equal(expected, back);

        for (int i = 0; i < SpreadPages; i++)
        {
            h.Frontend.PageSpan(h.Data(i).Page).Clear();
        }

        h.Frontend.QueueIndirect(BlkifConstants.OpRead, id + 1, 64, (ushort)segments, indirectGrefs);
        h.Frontend.Push();
        Assert.Equal(new BlkifTestResponse(id + 1, BlkifConstants.OpRead, BlkifConstants.RspOkay), h.Frontend.WaitForResponses(1).Single());
        for (int i = 0; i < segments; i++)
        {
            Assert.Equal(expected.AsSpan(i * 512, 512).ToArray(), h.Frontend.PageSpan(h.Data(i % SpreadPages).Page).Slice(descriptors[i].FirstSect * 512, 512).ToArray());
        }
    }

    [Fact]
    public async Task Completion_OutOfOrder_AnswersTheFastRequestFirst()
    {
        var gate = new GatedImage(new MemoryImage(DiskBytes));
        await using var h = new RingHarness(gate);
        gate.Hold(sectorOffsetBytes: 0);
        ulong slow = h.NextId();
        ulong fast = h.NextId();
        h.Frontend.QueueRequest(BlkifConstants.OpRead, slow, 0, h.Segments(0, 4096));
        h.Frontend.QueueRequest(BlkifConstants.OpRead, fast, 8, h.Segments(1, 4096));
        h.Frontend.Push();
        BlkifTestResponse first = h.Frontend.WaitForResponses(1).Single();
        Assert.Equal(fast, first.Id);
        gate.Release();
        BlkifTestResponse second = h.Frontend.WaitForResponses(1).Single();
        Assert.Equal(slow, second.Id);
        Assert.Equal(BlkifConstants.RspOkay, second.Status);
    }

    [Fact]
    public async Task Barrier_WaitsForOlderRequests_AndHoldsBackNewerOnes()
    {
        var memory = new MemoryImage(DiskBytes);
        var gate = new GatedImage(memory);
        await using var h = new RingHarness(gate);
        gate.Hold(sectorOffsetBytes: 0);
        ulong older = h.NextId();
        ulong barrier = h.NextId();
        ulong newer = h.NextId();
        h.Frontend.QueueRequest(BlkifConstants.OpRead, older, 0, h.Segments(0, 4096));
        h.Frontend.QueueRequest(BlkifConstants.OpWriteBarrier, barrier, 0, []);
        h.Frontend.QueueRequest(BlkifConstants.OpRead, newer, 8, h.Segments(1, 4096));
        h.Frontend.Push();

        // Nothing may be answered while the older read is held: the barrier drains, and the newer read is not even pulled.
        Assert.False(gate.SawOffset(8 * 512));
        Assert.Equal(0, memory.FlushCount);
        gate.Release();
        var order = h.Frontend.WaitForResponses(3).Select(r => r.Id).ToArray();
        Assert.Equal([older, barrier, newer], order);
        Assert.Equal(1, memory.FlushCount);
    }

    [Fact]
    public async Task ImageFailure_FailsThatRequestOnly()
    {
        var gate = new GatedImage(new MemoryImage(DiskBytes)) { FailReadsAt = 8 * 512 };
        await using var h = new RingHarness(gate);
        ulong bad = h.NextId();
        ulong good = h.NextId();
        h.Frontend.QueueRequest(BlkifConstants.OpRead, bad, 8, h.Segments(0, 4096));
        h.Frontend.QueueRequest(BlkifConstants.OpRead, good, 16, h.Segments(1, 4096));
        h.Frontend.Push();
        var byId = h.Frontend.WaitForResponses(2).ToDictionary(r => r.Id);
        Assert.Equal(BlkifConstants.RspError, byId[bad].Status);
        Assert.Equal(BlkifConstants.RspOkay, byId[good].Status);
        Assert.Equal(1, h.Ring.GetStats().ErrorsImage);
    }

    [Fact]
    public async Task ReadOnlyDisk_WriteFails_WithoutTouchingTheImage_ReadsWork()
    {
        var image = new MemoryImage(DiskBytes, readOnly: true);
        await using var h = new RingHarness(image);
        Assert.Equal(BlkifConstants.RspError, h.Write(0, RingHarness.Pattern(4096, 6)));
        Assert.Equal(new byte[4096], h.Read(0, 4096));
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpFlushDiskcache, 0, []));
    }

    [Fact]
    public async Task PauseResume_HoldsRequestsUntilResumed_OnTheNewImage()
    {
        var first = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(first);
        await h.Backend.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30));
        byte[] data = RingHarness.Pattern(4096, 7);
        h.Fill(0, data);
        ulong id = h.NextId();
        h.Frontend.QueueRequest(BlkifConstants.OpWrite, id, 0, h.Segments(0, 4096));
        h.Frontend.Push();

        // While paused, the request stays in the ring: no response can appear.
        Assert.Throws<TimeoutException>(() => h.Frontend.WaitForResponses(1, TimeSpan.FromMilliseconds(300)));
        var second = new MemoryImage(DiskBytes);
        h.Backend.Resume(second);
        Assert.Equal(BlkifConstants.RspOkay, h.Frontend.WaitForResponses(1).Single().Status);
        byte[] back = new byte[4096];
        await second.ReadAsync(0, back);
        Assert.Equal(data, back);
        await first.ReadAsync(0, back);
        Assert.Equal(new byte[4096], back);
    }

    [Fact]
    public async Task Disconnect_ReleasesTheRingMappingAndPort()
    {
        using var xen = new FakeXen();
        var h = new RingHarness(new MemoryImage(DiskBytes), xen: xen);
        Assert.Equal(BlkifConstants.RspOkay, h.Write(0, RingHarness.Pattern(4096, 8)));
        Assert.Equal(1, xen.LiveMappings);
        Assert.Equal(1, xen.BoundBackendPorts);
        await h.DisposeAsync();
        await h.Ring.Stopped.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, xen.LiveMappings);
        Assert.Equal(0, xen.BoundBackendPorts);
    }

    [Fact]
    public async Task Stress_ManyBatches_NoLostNotification()
    {
        var image = new GatedImage(new MemoryImage(DiskBytes)) { CompleteAsynchronouslyEvery = 3 };
        await using var h = new RingHarness(image, order: 1);
        var random = new Random(1234);
        int total = 0;
        for (int round = 0; round < 3000; round++)
        {
            int batch = random.Next(1, h.Frontend.SlotCount + 1);
            for (int i = 0; i < batch; i++)
            {
                int page = random.Next(0, RingHarness.DataPages);
                h.Frontend.QueueRequest((byte)(i % 2), h.NextId(), (ulong)random.Next(0, 2048) * 8, h.Segments(page, 4096));
            }

            h.Frontend.Push();
            var responses = h.Frontend.WaitForResponses(batch);
            Assert.All(responses, r => Assert.Equal(BlkifConstants.RspOkay, r.Status));
            total += batch;
        }

        BlkifRingStats stats = h.Ring.GetStats();
        Assert.Equal(total, stats.RequestsIn);
        Assert.Equal(total, stats.ResponsesOut);
    }
}
