using Tapdisk.Abi;

namespace Tapdisk.Blkif;

/// <summary><see cref="IEventChannel"/> over /dev/xen/evtchn; the loop sleeps in poll(2) on the evtchn fd and an eventfd.</summary>
public sealed class XenEventChannel : IEventChannel
{
    private readonly EvtchnDevice _device;
    private readonly EventFd _wake = new();

    public XenEventChannel(EvtchnDevice device)
    {
        _device = device;
    }

    public uint BindInterdomain(uint remoteDomain, uint remotePort) => _device.BindInterdomain(remoteDomain, remotePort);

    public int Unbind(uint port) => _device.Unbind(port);

    public int Notify(uint port) => _device.Notify(port);

    public int ReadPending(Span<uint> ports) => _device.ReadPending(ports);

    public int Unmask(uint port) => _device.Unmask(port);

    public int Reset() => _device.Reset();

    public void Wait(int timeoutMilliseconds)
    {
        if ((FdPoll.WaitReadable(_device.Handle, _wake.Handle, timeoutMilliseconds) & 2) != 0)
        {
            _wake.Drain();
        }
    }

    public void Wake() => _wake.Signal();

    /// <summary>The evtchn device polls readable while its queue of delivered ports is not empty.</summary>
    public System.Runtime.InteropServices.SafeHandle PendingHandle => _device.Handle;

    public void Dispose()
    {
        _device.Dispose();
        _wake.Dispose();
    }
}
