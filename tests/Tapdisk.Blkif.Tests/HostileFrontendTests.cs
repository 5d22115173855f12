using Tapdisk.Abi;
using Tapdisk.Testing;
using Tapdisk.Testing.Xen;
using Xunit;

namespace Tapdisk.Blkif.Tests;

/// <summary>control-xen.md Part II section 6: each misbehaviour fails its request (or its ring), never the process or another ring.</summary>
public sealed class HostileFrontendTests
{
    private const long DiskBytes = 8L * 1024 * 1024;
    private const ulong DiskSectors = DiskBytes / 512;

    public enum BadDirect
    {
        ZeroSegmentsRead,
        ZeroSegmentsWrite,
        TwelveSegments,
        ThirtyTwoSegments,
        MaxByteSegments,
        FirstAfterLast,
        LastSectorEight,
        FirstAndLastOutsidePage,
        BeyondTheEnd,
        EndExactlyPastDisk,
        SectorNearWrap,
        UnknownGrantRef,
        RevokedGrant,
        ReadIntoReadOnlyGrant,
    }

    [Theory]
    [InlineData(BadDirect.ZeroSegmentsRead, BlkifProtocol.X64)]
    [InlineData(BadDirect.ZeroSegmentsWrite, BlkifProtocol.X86)]
    [InlineData(BadDirect.TwelveSegments, BlkifProtocol.X64)]
    [InlineData(BadDirect.TwelveSegments, BlkifProtocol.X86)]
    [InlineData(BadDirect.ThirtyTwoSegments, BlkifProtocol.X64)]
    [InlineData(BadDirect.MaxByteSegments, BlkifProtocol.X64)]
    [InlineData(BadDirect.FirstAfterLast, BlkifProtocol.X64)]
    [InlineData(BadDirect.LastSectorEight, BlkifProtocol.X86)]
    [InlineData(BadDirect.FirstAndLastOutsidePage, BlkifProtocol.X64)]
    [InlineData(BadDirect.BeyondTheEnd, BlkifProtocol.X64)]
    [InlineData(BadDirect.EndExactlyPastDisk, BlkifProtocol.X86)]
    [InlineData(BadDirect.SectorNearWrap, BlkifProtocol.X64)]
    [InlineData(BadDirect.UnknownGrantRef, BlkifProtocol.X64)]
    [InlineData(BadDirect.RevokedGrant, BlkifProtocol.X86)]
    [InlineData(BadDirect.ReadIntoReadOnlyGrant, BlkifProtocol.X64)]
    public async Task BadDirectRequest_IsAnsweredError_AndTheRingServesOn(BadDirect kind, BlkifProtocol protocol)
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image, protocol);
        byte[] before = RingHarness.Pattern(4096, 9);
        Assert.Equal(BlkifConstants.RspOkay, h.Write(0, before));

        byte op = BlkifConstants.OpRead;
        ulong sector = 0;
        int? nrSegments = null;
        BlkifSegment[] segments = h.Segments(0, 4096);
        switch (kind)
        {
            case BadDirect.ZeroSegmentsRead:
                segments = [];
                break;
            case BadDirect.ZeroSegmentsWrite:
                op = BlkifConstants.OpWrite;
                segments = [];
                break;
            case BadDirect.TwelveSegments:
                // The slot holds 11 descriptors; the count claims 12 (tapdisk reads past its copy and aborts).
                segments = h.Segments(0, 11 * 4096);
                nrSegments = 12;
                break;
            case BadDirect.ThirtyTwoSegments:
                segments = h.Segments(0, 11 * 4096);
                nrSegments = 32;
                break;
            case BadDirect.MaxByteSegments:
                segments = h.Segments(0, 11 * 4096);
                nrSegments = 255;
                break;
            case BadDirect.FirstAfterLast:
                segments[0].FirstSect = 5;
                segments[0].LastSect = 4;
                break;
            case BadDirect.LastSectorEight:
                segments[0].LastSect = 8;
                break;
            case BadDirect.FirstAndLastOutsidePage:
                segments[0].FirstSect = 200;
                segments[0].LastSect = 255;
                break;
            case BadDirect.BeyondTheEnd:
                sector = DiskSectors;
                break;
            case BadDirect.EndExactlyPastDisk:
                sector = DiskSectors - 7;
                break;
            case BadDirect.SectorNearWrap:
                sector = ulong.MaxValue - 3;
                break;
            case BadDirect.UnknownGrantRef:
                segments[0].Gref = 999_999;
                break;
            case BadDirect.RevokedGrant:
                op = BlkifConstants.OpWrite;
                h.Xen.EndAccess(segments[0].Gref);
                break;
            case BadDirect.ReadIntoReadOnlyGrant:
                (int _, uint readOnly) = h.Frontend.AllocateDataPage(readOnly: true);
                segments[0].Gref = readOnly;
                break;
        }

        ulong id = h.NextId();
        h.Frontend.QueueRequest(op, id, sector, segments, nrSegments);
        h.Frontend.Push();
        Assert.Equal(new BlkifTestResponse(id, op, BlkifConstants.RspError), h.Frontend.WaitForResponses(1).Single());

        // Nothing reached the disk, and the ring still serves.
        Assert.False(h.Ring.IsBroken);
        Assert.Equal(before, h.Read(0, 4096, firstPage: 30));
    }

    [Theory]
    [InlineData((byte)BlkifConstants.OpReserved1)]
    [InlineData((byte)7)]
    [InlineData((byte)255)]
    public async Task UnknownOperation_IsEopnotsupp_WithTheOperationEchoed(byte operation)
    {
        await using var h = new RingHarness(new MemoryImage(DiskBytes));
        ulong id = h.NextId();
        h.Frontend.QueueRequest(operation, id, 0, h.Segments(0, 4096));
        h.Frontend.Push();
        Assert.Equal(new BlkifTestResponse(id, operation, BlkifConstants.RspEopnotsupp), h.Frontend.WaitForResponses(1).Single());
    }

    [Fact]
    public async Task Indirect_WhenNotOffered_IsEopnotsupp()
    {
        await using var h = new RingHarness(new MemoryImage(DiskBytes), options: new BlkifRingOptions { MaxIndirectSegments = 0 });
        (int _, uint gref) = h.Frontend.AllocateDataPage();
        ulong id = h.NextId();
        h.Frontend.QueueIndirect(BlkifConstants.OpRead, id, 0, 1, [gref]);
        h.Frontend.Push();
        Assert.Equal(BlkifConstants.RspEopnotsupp, h.Frontend.WaitForResponses(1).Single().Status);
    }

    public enum BadIndirect
    {
        ZeroSegments,
        MoreThanOffered,
        BarrierAsIndirectOp,
        DiscardAsIndirectOp,
        BadDescriptorPageRef,
        MissingSecondDescriptorPage,
        DescriptorWithLastSectorEight,
        DescriptorWithBadDataRef,
    }

    [Theory]
    [InlineData(BadIndirect.ZeroSegments)]
    [InlineData(BadIndirect.MoreThanOffered)]
    [InlineData(BadIndirect.BarrierAsIndirectOp)]
    [InlineData(BadIndirect.DiscardAsIndirectOp)]
    [InlineData(BadIndirect.BadDescriptorPageRef)]
    [InlineData(BadIndirect.MissingSecondDescriptorPage)]
    [InlineData(BadIndirect.DescriptorWithLastSectorEight)]
    [InlineData(BadIndirect.DescriptorWithBadDataRef)]
    public async Task BadIndirectRequest_IsAnsweredError(BadIndirect kind)
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image, options: new BlkifRingOptions { MaxIndirectSegments = 1024 });
        int count = kind == BadIndirect.MissingSecondDescriptorPage ? 600 : 20;
        var descriptors = new BlkifSegment[count];
        for (int i = 0; i < count; i++)
        {
            descriptors[i] = new BlkifSegment { Gref = h.Data(i % RingHarness.DataPages).Gref, FirstSect = 0, LastSect = 0 };
        }

        if (kind == BadIndirect.DescriptorWithLastSectorEight)
        {
            descriptors[13].LastSect = 8;
        }

        if (kind == BadIndirect.DescriptorWithBadDataRef)
        {
            descriptors[7].Gref = 123_456;
        }

        (int page, uint gref) = h.Frontend.AllocateDataPage(readOnly: true);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(descriptors.AsSpan(0, Math.Min(512, count))).CopyTo(h.Frontend.PageSpan(page));
        uint[] grefs = kind switch
        {
            BadIndirect.BadDescriptorPageRef => [777_777],
            BadIndirect.MissingSecondDescriptorPage => [gref, 0],
            _ => [gref],
        };

        byte indirectOp = kind switch
        {
            BadIndirect.BarrierAsIndirectOp => BlkifConstants.OpWriteBarrier,
            BadIndirect.DiscardAsIndirectOp => BlkifConstants.OpDiscard,
            _ => BlkifConstants.OpWrite,
        };
        ushort nr = kind switch
        {
            BadIndirect.ZeroSegments => 0,
            BadIndirect.MoreThanOffered => 1025,
            _ => (ushort)count,
        };

        byte[] before = RingHarness.Pattern(4096, 10);
        await image.WriteAsync(0, before);
        ulong id = h.NextId();
        h.Frontend.QueueIndirect(indirectOp, id, 0, nr, grefs);
        h.Frontend.Push();
        // The answer names indirect_op when it is READ or WRITE (what blkfront checks, tests/xenlab/FINDINGS.md 1), else 6.
        byte answered = indirectOp is BlkifConstants.OpRead or BlkifConstants.OpWrite ? indirectOp : BlkifConstants.OpIndirect;
        Assert.Equal(new BlkifTestResponse(id, answered, BlkifConstants.RspError), h.Frontend.WaitForResponses(1).Single());
        Assert.Equal(before, h.Read(0, 4096, firstPage: 90));
    }

    [Fact]
    public async Task SameGrantInSeveralSegments_Works_AndDuplicateIdsAreEchoed()
    {
        var image = new MemoryImage(DiskBytes);
        await using var h = new RingHarness(image);
        byte[] page = RingHarness.Pattern(4096, 11);
        h.Fill(0, page);
        uint gref = h.Data(0).Gref;
        BlkifSegment[] twice = [new() { Gref = gref, FirstSect = 0, LastSect = 7 }, new() { Gref = gref, FirstSect = 0, LastSect = 7 }];
        h.Frontend.QueueRequest(BlkifConstants.OpWrite, 42, 0, twice);
        h.Frontend.QueueRequest(BlkifConstants.OpWrite, 42, 16, twice);
        h.Frontend.Push();
        var responses = h.Frontend.WaitForResponses(2);
        Assert.All(responses, r => Assert.Equal(new BlkifTestResponse(42, BlkifConstants.OpWrite, BlkifConstants.RspOkay), r));
        byte[] back = new byte[8192];
        await image.ReadAsync(16 * 512, back);
        Assert.Equal(page, back[..4096]);
        Assert.Equal(page, back[4096..]);
    }

    [Fact]
    public async Task SecureDiscard_FlagIgnored()
    {
        await using var h = new RingHarness(new MemoryImage(DiskBytes));
        h.Frontend.QueueDiscard(5, 0, 8, flag: BlkifConstants.DiscardSecure);
        h.Frontend.Push();
        Assert.Equal(BlkifConstants.RspOkay, h.Frontend.WaitForResponses(1).Single().Status);
    }

    [Theory]
    [InlineData(33u)]
    [InlineData(0xFFFF_FFF0u)]
    public async Task ProducerOverrun_StopsThatRingOnly_OtherRingsServeOn(uint lie)
    {
        using var xen = new FakeXen();
        await using var victim = new RingHarness(new MemoryImage(DiskBytes), xen: xen, devid: 1);
        await using var bystander = new RingHarness(new MemoryImage(DiskBytes), xen: xen, domid: 9, devid: 2);
        Assert.Equal(BlkifConstants.RspOkay, victim.Write(0, RingHarness.Pattern(4096, 12)));

        // req_prod jumps more than a ring's worth past rsp_prod_pvt (33 ahead), or moves backwards (a huge unsigned gap).
        victim.Frontend.PublishRawRequestProducer(victim.Frontend.RequestProducerPrivate + lie);
        await WaitUntil(() => victim.Ring.IsBroken);
        Assert.False(victim.Frontend.HasUnreadResponse);
        Assert.True(victim.Ring.GetStats().ErrorsMessage > 0);

        Assert.Equal(BlkifConstants.RspOkay, bystander.Write(8, RingHarness.Pattern(4096, 13)));
        Assert.False(bystander.Ring.IsBroken);
    }

    [Fact]
    public async Task EventStorm_WithoutRequests_IsHarmless()
    {
        await using var h = new RingHarness(new MemoryImage(DiskBytes));
        for (int i = 0; i < 10_000; i++)
        {
            h.Xen.NotifyFromFrontend(h.Frontend.Parameters.RemotePort);
        }

        Assert.Equal(BlkifConstants.RspOkay, h.Write(0, RingHarness.Pattern(4096, 14)));
        Assert.Equal(0, h.Ring.GetStats().ErrorsMessage);
    }

    [Theory]
    [InlineData(4, BlkifProtocol.X64, 22)]
    [InlineData(-1, BlkifProtocol.X64, 22)]
    [InlineData(0, (BlkifProtocol)9, 93)]
    public void Connect_BadOrderOrProtocol_IsRefusedWithTheErrno(int order, BlkifProtocol protocol, int errno)
    {
        using var xen = new FakeXen();
        using var frontend = new TestFrontend(xen);
        BlkifConnectParameters p = frontend.Parameters with { Order = order, Protocol = protocol };
        BlkifConnectException e = Assert.Throws<BlkifConnectException>(() => BlkifRing.Connect(p, xen, new MemoryImage(DiskBytes)));
        Assert.Equal(errno, e.Errno);
        Assert.Equal(0, xen.LiveMappings);
    }

    [Fact]
    public void Connect_UnmappableRingGrant_FailsEinval_AndLeavesNothingMapped()
    {
        using var xen = new FakeXen();
        using var frontend = new TestFrontend(xen, order: 1);
        BlkifConnectParameters p = frontend.Parameters with { RingRefs = [frontend.Parameters.RingRefs[0], 424_242] };
        BlkifConnectException e = Assert.Throws<BlkifConnectException>(() => BlkifRing.Connect(p, xen, new MemoryImage(DiskBytes)));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal(0, xen.LiveMappings);
    }

    [Theory]
    [InlineData(false, 22)]
    [InlineData(true, 3)]
    public void Connect_PortNotOfferedOrDomainGone_FailsWithBindErrno_AndUnmapsTheRing(bool unknownDomain, int errno)
    {
        using var xen = new FakeXen();
        using var frontend = new TestFrontend(xen);
        BlkifConnectParameters p = frontend.Parameters with { RemotePort = 5555 };
        if (unknownDomain)
        {
            // Domain 77 granted the ring page but has no event channel at all: the bind fails with ESRCH, as for a dead domain.
            p = p with { Domid = 77, RingRefs = [xen.GrantAccess(77, xen.AllocatePages(1), readOnly: false)] };
        }

        BlkifConnectException e = Assert.Throws<BlkifConnectException>(() => BlkifRing.Connect(p, xen, new MemoryImage(DiskBytes)));
        Assert.Equal(errno, e.Errno);
        Assert.Equal(0, xen.LiveMappings);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        // A hang guard only: the condition is a state, not a timing.
        for (int i = 0; i < 3000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}
