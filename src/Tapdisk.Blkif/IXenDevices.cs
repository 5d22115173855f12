namespace Tapdisk.Blkif;

/// <summary>Opens the devices one ring uses; lets tests substitute fakes for /dev/xen/gntdev and /dev/xen/evtchn.</summary>
public interface IXenDevices
{
    IGrantDevice OpenGrantDevice();

    IEventChannel OpenEventChannel();
}
