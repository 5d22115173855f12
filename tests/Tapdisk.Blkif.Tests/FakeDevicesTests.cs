using Tapdisk.Abi;
using Tapdisk.Testing;
using Tapdisk.Testing.Xen;
using Xunit;

namespace Tapdisk.Blkif.Tests;

/// <summary>The fakes keep the kernel's contract (control-xen.md 1.4, 1.5, 2.2), or the ring tests would prove nothing.</summary>
public sealed class FakeDevicesTests
{
    private const ushort Fe = 7;

    // A pinned local buffer standing in for the backend's bounce memory (its address goes into the copy descriptors).
    private static readonly byte[] s_pinned = GC.AllocateArray<byte>(4096, pinned: true);

    [Fact]
    public void Map_SharesPagesWithTheGuest_InRefOrder()
    {
        using var xen = new FakeXen(64);
        int a = xen.AllocatePages(1);
        int b = xen.AllocatePages(1);
        uint ra = xen.GrantAccess(Fe, a, readOnly: false);
        uint rb = xen.GrantAccess(Fe, b, readOnly: false);
        using IGrantDevice gnt = xen.OpenGrantDevice();
        using MappedRegion map = gnt.MapGrantRefs(Fe, [rb, ra], writable: true);
        map.Span[0] = 0x11;
        map.Span[4096] = 0x22;
        Assert.Equal(0x11, xen.Page(b)[0]);
        Assert.Equal(0x22, xen.Page(a)[0]);
        xen.Page(a)[1] = 0x33;
        Assert.Equal(0x33, map.Span[4097]);
    }

    [Fact]
    public void Map_IsAllOrNothing_EinvalForABadRefOrAWritableMapOfAReadOnlyGrant()
    {
        using var xen = new FakeXen(64);
        uint good = xen.GrantAccess(Fe, xen.AllocatePages(1), readOnly: false);
        uint readOnly = xen.GrantAccess(Fe, xen.AllocatePages(1), readOnly: true);
        using IGrantDevice gnt = xen.OpenGrantDevice();
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => gnt.MapGrantRefs(Fe, [good, 9999], writable: true)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => gnt.MapGrantRefs(Fe, [readOnly], writable: true)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => gnt.MapGrantRefs(Fe + 1, [good], writable: true)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => gnt.MapGrantRefs(Fe, [], writable: true)).Errno);
        using (MappedRegion ro = gnt.MapGrantRefs(Fe, [readOnly], writable: false))
        {
            Assert.Equal(4096, ro.Length);
        }

        Assert.Equal(0, xen.LiveMappings);
    }

    [Fact]
    public void GrantCopy_ReportsPerSegmentStatus_AndRejectsMalformedCalls()
    {
        using var xen = new FakeXen(64);
        int page = xen.AllocatePages(1);
        uint good = xen.GrantAccess(Fe, page, readOnly: false);
        uint readOnly = xen.GrantAccess(Fe, xen.AllocatePages(1), readOnly: true);
        using IGrantDevice gnt = xen.OpenGrantDevice();
        nint address = System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(s_pinned, 0);

        xen.Page(page)[..512].Fill(0x5A);
        GrantCopySegment[] segs =
        [
            new() { SourceRef = 9999, SourceDomid = Fe, DestVirt = (ulong)address, Len = 512, Flags = GrantCopySegment.SourceGref },
            new() { SourceRef = good, SourceDomid = Fe, DestVirt = (ulong)address, Len = 512, Flags = GrantCopySegment.SourceGref },
            new() { SourceVirt = (ulong)address, DestRef = readOnly, DestDomid = Fe, Len = 512, Flags = GrantCopySegment.DestGref },
            new() { SourceRef = good, SourceDomid = 300, DestVirt = (ulong)address, Len = 512, Flags = GrantCopySegment.SourceGref },
        ];
        Assert.Equal(0, gnt.GrantCopy(segs));
        Assert.Equal(FakeGrantDevice.GnttabBadGntref, segs[0].Status);
        Assert.Equal(0, segs[1].Status);
        Assert.Equal(FakeGrantDevice.GnttabGeneralError, segs[2].Status);
        Assert.Equal(FakeGrantDevice.GnttabBadDomain, segs[3].Status);
        Assert.True(s_pinned.AsSpan(0, 512).IndexOfAnyExcept((byte)0x5A) < 0);

        GrantCopySegment[] crossing = [new() { SourceRef = good, SourceDomid = Fe, SourceOffset = 4000, DestVirt = (ulong)address, Len = 512, Flags = GrantCopySegment.SourceGref }];
        Assert.Equal(Errno.EINVAL, gnt.GrantCopy(crossing));
        GrantCopySegment[] localOnly = [new() { SourceVirt = (ulong)address, DestVirt = (ulong)address, Len = 512 }];
        Assert.Equal(Errno.EINVAL, gnt.GrantCopy(localOnly));
        GrantCopySegment[] badAddress = [new() { SourceRef = good, SourceDomid = Fe, DestVirt = 0x10, Len = 512, Flags = GrantCopySegment.SourceGref }];
        Assert.Equal(Errno.EFAULT, gnt.GrantCopy(badAddress));
    }

    [Fact]
    public void EventChannel_BindRaisesOnce_MaskedEventsCoalesce_UnmaskDeliversThePending()
    {
        using var xen = new FakeXen(16);
        int kicks = 0;
        uint remote = xen.AllocateUnboundPort(Fe, () => Interlocked.Increment(ref kicks));
        using IEventChannel evt = xen.OpenEventChannel();
        uint local = evt.BindInterdomain(Fe, remote);
        Span<uint> ports = stackalloc uint[8];

        // Xen raises a newly bound port once.
        Assert.Equal(1, evt.ReadPending(ports));
        Assert.Equal(local, ports[0]);
        Assert.Equal(0, evt.ReadPending(ports));

        // While masked, three kicks become one event, delivered at unmask.
        xen.NotifyFromFrontend(remote);
        xen.NotifyFromFrontend(remote);
        xen.NotifyFromFrontend(remote);
        Assert.Equal(0, evt.ReadPending(ports));
        Assert.Equal(0, evt.Unmask(local));
        Assert.Equal(1, evt.ReadPending(ports));
        Assert.Equal(0, evt.ReadPending(ports));

        // Unmasked with nothing pending: the next kick is delivered at once.
        evt.Unmask(local);
        xen.NotifyFromFrontend(remote);
        Assert.Equal(1, evt.ReadPending(ports));

        Assert.Equal(0, evt.Notify(local));
        Assert.Equal(1, kicks);
        Assert.Equal(107, evt.Notify(local + 100)); // ENOTCONN
        Assert.Equal(0, evt.Unbind(local));
        Assert.Equal(107, evt.Unbind(local));
    }

    [Fact]
    public void EventChannel_BindErrors_EinvalForAPortNotOffered_EsrchForNoSuchDomain()
    {
        using var xen = new FakeXen(16);
        uint remote = xen.AllocateUnboundPort(Fe, () => { });
        using IEventChannel evt = xen.OpenEventChannel();
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => evt.BindInterdomain(Fe, remote + 1)).Errno);
        Assert.Equal(3, Assert.Throws<ErrnoIOException>(() => evt.BindInterdomain(99, remote)).Errno);
        evt.BindInterdomain(Fe, remote);
        Assert.Equal(Errno.EINVAL, Assert.Throws<ErrnoIOException>(() => evt.BindInterdomain(Fe, remote)).Errno);
    }

    [Fact]
    public async Task EventChannel_WakeEndsAWait()
    {
        using var xen = new FakeXen(16);
        using IEventChannel evt = xen.OpenEventChannel();
        var waiter = Task.Run(() => evt.Wait(-1));
        evt.Wake();
        await waiter.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void RealDevices_Absent_ConnectFailsWithTheOpenErrno()
    {
        using var dir = new TempDirectory();
        var devices = new XenDevices(dir.File("gntdev"), dir.File("evtchn"));
        var p = new BlkifConnectParameters(7, 1, [8], 0, BlkifProtocol.X64, 10);
        BlkifConnectException e = Assert.Throws<BlkifConnectException>(() => BlkifRing.Connect(p, devices, new MemoryImage(1 << 20)));
        Assert.Equal(Errno.ENOENT, e.Errno);
    }
}
