using Tapdisk.Abi;
using Tapdisk.Blkif;

namespace Tapdisk.Testing.Xen;

/// <summary>
/// One backend evtchn fd as Linux and Xen behave (control-xen.md 2.2): a bound port starts pending (Xen raises it at
/// bind); delivering a port masks it; events on a masked port coalesce into one that is delivered on unmask; ports not
/// bound through this fd give ENOTCONN for notify/unbind and are ignored by unmask.
/// </summary>
public sealed class FakeEventChannel : IEventChannel
{
    private readonly FakeXen _xen;
    private readonly object _lock = new();
    private readonly Queue<uint> _queue = new();
    private readonly HashSet<uint> _masked = [];
    private readonly HashSet<uint> _pendingWhileMasked = [];

    // Readable while _queue holds a port, as the evtchn device polls (its ring of delivered ports not empty).
    private readonly EventFd _readable = new();
    private bool _woken;
    private bool _disposed;

    internal FakeEventChannel(FakeXen xen)
    {
        _xen = xen;
    }

    /// <summary>Local port to frontend port.</summary>
    internal Dictionary<uint, uint> Remote { get; } = [];

    public int BoundCount
    {
        get
        {
            lock (_lock)
            {
                return _disposed ? 0 : Remote.Count;
            }
        }
    }

    /// <summary>Events raised for this fd's ports (before coalescing).</summary>
    public long Raised { get; private set; }

    /// <summary>Events actually queued for read() (after coalescing).</summary>
    public long Delivered { get; private set; }

    internal void AddRemote(uint local, uint remote)
    {
        lock (_lock)
        {
            Remote[local] = remote;
        }
    }

    public uint BindInterdomain(uint remoteDomain, uint remotePort)
    {
        int errno = _xen.Bind(this, remoteDomain, remotePort, out uint local);
        if (errno != 0)
        {
            throw new ErrnoIOException(errno, "fake evtchn", "IOCTL_EVTCHN_BIND_INTERDOMAIN");
        }

        Raise(local); // Xen marks a newly bound port pending [run].
        return local;
    }

    public int Unbind(uint port)
    {
        uint remote;
        lock (_lock)
        {
            if (!Remote.Remove(port, out remote))
            {
                return ENOTCONN;
            }

            _masked.Remove(port);
            _pendingWhileMasked.Remove(port);
        }

        _xen.Unbind(remote);
        return 0;
    }

    public int Notify(uint port)
    {
        uint remote;
        lock (_lock)
        {
            if (!Remote.TryGetValue(port, out remote))
            {
                return ENOTCONN;
            }
        }

        _xen.NotifyFrontend(remote);
        return 0;
    }

    public int ReadPending(Span<uint> ports)
    {
        lock (_lock)
        {
            int n = 0;
            while (n < ports.Length && _queue.TryDequeue(out uint port))
            {
                ports[n++] = port;
            }

            if (_queue.Count == 0)
            {
                _readable.Drain();
            }

            return n;
        }
    }

    public int Unmask(uint port)
    {
        lock (_lock)
        {
            if (!Remote.ContainsKey(port) || !_masked.Remove(port))
            {
                return 0;
            }

            if (_pendingWhileMasked.Remove(port))
            {
                Deliver(port);
            }
        }

        return 0;
    }

    public int Reset()
    {
        lock (_lock)
        {
            _queue.Clear();
            _readable.Drain();
        }

        return 0;
    }

    public void Wait(int timeoutMilliseconds)
    {
        lock (_lock)
        {
            if (_queue.Count == 0 && !_woken)
            {
                Monitor.Wait(_lock, timeoutMilliseconds);
            }

            _woken = false;
        }
    }

    public System.Runtime.InteropServices.SafeHandle PendingHandle => _readable.Handle;

    public void Wake()
    {
        lock (_lock)
        {
            _woken = true;
            Monitor.PulseAll(_lock);
        }
    }

    public void Dispose()
    {
        uint[] remotes;
        lock (_lock)
        {
            _disposed = true;
            remotes = [.. Remote.Values];
            Remote.Clear();
        }

        foreach (uint remote in remotes)
        {
            _xen.Unbind(remote);
        }

        _readable.Dispose();
    }

    /// <summary>Xen raises the local port: queued and masked, or remembered if already masked.</summary>
    internal void Raise(uint port)
    {
        lock (_lock)
        {
            if (!Remote.ContainsKey(port))
            {
                return;
            }

            Raised++;
            if (_masked.Contains(port))
            {
                _pendingWhileMasked.Add(port);
                return;
            }

            Deliver(port);
        }
    }

    private void Deliver(uint port)
    {
        _masked.Add(port);
        _queue.Enqueue(port);
        Delivered++;
        _readable.Signal();
        Monitor.PulseAll(_lock);
    }

    private const int ENOTCONN = 107;
}
