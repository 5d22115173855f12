using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary>The real devices under /dev/xen.</summary>
public sealed class XenDevices : IXenDevices
{
    public static XenDevices Default { get; } = new(GntdevDevice.DefaultPath, EvtchnDevice.DefaultPath);

    public XenDevices(string gntdevPath, string evtchnPath)
    {
        GntdevPath = gntdevPath;
        EvtchnPath = evtchnPath;
    }

    public string GntdevPath { get; }

    public string EvtchnPath { get; }

    public IGrantDevice OpenGrantDevice() => new XenGrantDevice(GntdevDevice.Open(GntdevPath));

    public IEventChannel OpenEventChannel() => new XenEventChannel(EvtchnDevice.Open(EvtchnPath));
}
