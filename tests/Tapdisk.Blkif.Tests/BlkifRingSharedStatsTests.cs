using Tapdisk.Abi;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Blkif.Tests;

/// <summary>The ring counts into blktap's frontend page (struct stats, version 1) and blkback's page as it serves requests.</summary>
public sealed class BlkifRingSharedStatsTests
{
    [Fact]
    public async Task Requests_CountIntoBothPages_FlushOnlyOnBlkback()
    {
        using var dir = new TempDirectory();
        await using var h = new RingHarness(new MemoryImage(1024 * 1024));
        var frontend = new TdStatsPage(dir.File("vbd-1-51712"), TdStats.VbdVersion);
        var ring = new BlkbackStatsPage(dir.File("statistics"), dir.File("statistics~"));
        h.Ring.FrontendStats = frontend;
        h.Ring.RingStats = ring;

        Assert.Equal(BlkifConstants.RspOkay, h.Write(8, RingHarness.Pattern(8192, 1)));
        Assert.Equal(4096, h.Read(8, 4096, firstPage: 10).Length);
        Assert.Equal(BlkifConstants.RspOkay, h.Submit(BlkifConstants.OpFlushDiskcache, 0, []));

        TdStats f = frontend.Snapshot();
        Assert.Equal(TdStats.VbdVersion, f.Version);
        Assert.Equal((1ul, 1ul, 16ul), (f.WriteReqsSubmitted, f.WriteReqsCompleted, f.WriteSectors));
        Assert.Equal((1ul, 1ul, 8ul), (f.ReadReqsSubmitted, f.ReadReqsCompleted, f.ReadSectors));
        Assert.Equal(0ul, f.IoErrors);

        BlkbackStats b = ring.Snapshot();
        Assert.Equal((1ul, 1L, 16ul), (b.WriteRequests, b.WriteCompleted, b.WriteSectors));
        Assert.Equal((1ul, 1L, 8ul), (b.ReadRequests, b.ReadCompleted, b.ReadSectors));
        Assert.Equal(1ul, b.FlushRequests);
        Assert.True(b.WriteMaxMicroseconds <= b.WriteSumMicroseconds);

        // A write past the end fails: an I/O error on the frontend page, nothing completed.
        Assert.Equal(BlkifConstants.RspError, h.Write(4096, RingHarness.Pattern(4096, 2)));
        Assert.Equal(1ul, frontend.Snapshot().IoErrors);
        Assert.Equal(1ul, frontend.Snapshot().WriteReqsCompleted);

        BlkifRingIndexes indexes = h.Ring.GetIndexes();
        Assert.Equal(indexes.ReqProd, indexes.ReqCons);
        Assert.True(indexes.Entries >= 32);
        frontend.Remove();
        ring.Remove();
    }
}
