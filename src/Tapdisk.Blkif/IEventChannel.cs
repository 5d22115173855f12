namespace Tapdisk.Blkif;

/// <summary>
/// What the ring needs from evtchn, plus a way to sleep until a port fires or another thread wakes the loop.
/// Ports are masked when delivered and stay masked until <see cref="Unmask"/> (control-xen.md Part II 2.2).
/// Real: <see cref="XenEventChannel"/>.
/// </summary>
public interface IEventChannel : IDisposable
{
    /// <summary>Binds the frontend's unbound port; returns the local port. Throws ErrnoIOException (EINVAL, ESRCH).</summary>
    uint BindInterdomain(uint remoteDomain, uint remotePort);

    /// <summary>Returns 0 or the errno.</summary>
    int Unbind(uint port);

    /// <summary>Kicks the remote end; returns 0 or the errno.</summary>
    int Notify(uint port);

    /// <summary>Reads pending local ports without blocking: the count, 0 if none, or a negative errno (-EFBIG: queue overflowed).</summary>
    int ReadPending(Span<uint> ports);

    /// <summary>Re-enables delivery on a port; an event that fired while masked is delivered then. Returns 0 or the errno.</summary>
    int Unmask(uint port);

    /// <summary>After -EFBIG: clears the queue; every ring must then be rescanned. Returns 0 or the errno.</summary>
    int Reset();

    /// <summary>Sleeps until a port may be pending or <see cref="Wake"/> is called (or the timeout passes; -1 = none).</summary>
    void Wait(int timeoutMilliseconds);

    /// <summary>Makes the current or next <see cref="Wait"/> return. Safe from any thread.</summary>
    void Wake();

    /// <summary>
    /// A descriptor that polls readable while a delivered port waits for <see cref="ReadPending"/> (the evtchn
    /// device itself), so a ring thread with an io_uring loop can wait for events and I/O in one call; null when
    /// the channel has none (then <see cref="Wait"/> is used).
    /// </summary>
    System.Runtime.InteropServices.SafeHandle? PendingHandle => null;
}
