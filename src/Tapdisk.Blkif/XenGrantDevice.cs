using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary><see cref="IGrantDevice"/> over /dev/xen/gntdev.</summary>
public sealed class XenGrantDevice : IGrantDevice
{
    private readonly GntdevDevice _device;

    public XenGrantDevice(GntdevDevice device)
    {
        _device = device;
    }

    public MappedRegion MapGrantRefs(uint domid, ReadOnlySpan<uint> refs, bool writable) => _device.MapGrantRefs(domid, refs, writable);

    public int GrantCopy(Span<GrantCopySegment> segments) => _device.GrantCopy(segments);

    public void Dispose() => _device.Dispose();
}
