using Tapdisk.Abi;
using Tapdisk.Blkif;

namespace Tapdisk.Testing.Xen;

/// <summary>
/// A stand-in for the hypervisor between one test frontend domain and a backend in this process: guest memory is a
/// memfd whose pages are really shared with the backend's mappings, a grant table decides who may touch which page,
/// and event channels connect a frontend port to a backend port with Xen's mask/pending rules (control-xen.md Part II 1, 2).
/// Thread-safe.
/// </summary>
public sealed class FakeXen : IXenDevices, IDisposable
{
    public const int PageSize = 4096;
    public const ushort BackendDomid = 0;

    private readonly Lock _lock = new();
    private readonly Dictionary<uint, Grant> _grants = [];
    private readonly Dictionary<uint, FrontendPort> _frontendPorts = [];
    private readonly List<FakeEventChannel> _channels = [];
    private readonly List<FakeGrantDevice> _grantDevices = [];
    private uint _nextRef = 8; // Linux reserves the first grant entries.
    private uint _nextFrontendPort = 10;
    private uint _nextBackendPort = 40;
    private int _nextPage;

    public FakeXen(int pages = 4096)
    {
        Memory = new SharedMemoryFile("fake-xen-guest", pages);
        int[] all = new int[pages];
        for (int i = 0; i < pages; i++)
        {
            all[i] = i;
        }

        GuestView = Memory.MapPages(all, writable: true);
    }

    internal SharedMemoryFile Memory { get; }

    /// <summary>All guest pages, as the frontend sees them.</summary>
    public MappedRegion GuestView { get; }

    /// <summary>Backend mappings not yet released (leak check).</summary>
    public int LiveMappings => _grantDevices.Sum(d => d.LiveMappings);

    public int BoundBackendPorts
    {
        get
        {
            lock (_lock)
            {
                return _channels.Sum(c => c.BoundCount);
            }
        }
    }

    public Span<byte> Page(int page) => GuestView.Slice(page * PageSize, PageSize);

    public int AllocatePages(int count)
    {
        lock (_lock)
        {
            int first = _nextPage;
            if (first + count > Memory.Pages)
            {
                throw new InvalidOperationException("fake guest memory exhausted");
            }

            _nextPage += count;
            return first;
        }
    }

    public uint GrantAccess(ushort frontendDomid, int page, bool readOnly)
    {
        lock (_lock)
        {
            uint gref = _nextRef++;
            _grants[gref] = new Grant(frontendDomid, page, readOnly);
            return gref;
        }
    }

    public void EndAccess(uint gref)
    {
        lock (_lock)
        {
            _grants.Remove(gref);
        }
    }

    /// <summary>EVTCHNOP_alloc_unbound by the frontend, offered to the backend domain; returns the frontend's port.</summary>
    public uint AllocateUnboundPort(ushort frontendDomid, Action onNotified)
    {
        lock (_lock)
        {
            uint port = _nextFrontendPort++;
            _frontendPorts[port] = new FrontendPort(frontendDomid, onNotified);
            return port;
        }
    }

    /// <summary>The frontend kicks its port: the backend end is raised (and masked) or marked pending while masked.</summary>
    public void NotifyFromFrontend(uint frontendPort)
    {
        FakeEventChannel? channel;
        uint backendPort;
        lock (_lock)
        {
            if (!_frontendPorts.TryGetValue(frontendPort, out FrontendPort? fp) || fp.Bound is null)
            {
                return;
            }

            (channel, backendPort) = fp.Bound.Value;
        }

        channel.Raise(backendPort);
    }

    public IGrantDevice OpenGrantDevice()
    {
        var device = new FakeGrantDevice(this);
        lock (_lock)
        {
            _grantDevices.Add(device);
        }

        return device;
    }

    public IEventChannel OpenEventChannel()
    {
        var channel = new FakeEventChannel(this);
        lock (_lock)
        {
            _channels.Add(channel);
        }

        return channel;
    }

    internal bool TryGetGrant(uint gref, out Grant grant)
    {
        lock (_lock)
        {
            return _grants.TryGetValue(gref, out grant);
        }
    }

    internal bool IsKnownDomain(uint domid)
    {
        lock (_lock)
        {
            return _frontendPorts.Values.Any(p => p.Domid == domid) || _grants.Values.Any(g => g.Domid == domid);
        }
    }

    /// <summary>Binds an unbound frontend port to a new backend port on <paramref name="channel"/>; the errno on failure.</summary>
    internal int Bind(FakeEventChannel channel, uint remoteDomain, uint remotePort, out uint localPort)
    {
        lock (_lock)
        {
            localPort = 0;
            if (!_frontendPorts.Values.Any(p => p.Domid == remoteDomain))
            {
                return ESRCH; // No such (running) domain as far as event channels go.
            }

            if (!_frontendPorts.TryGetValue(remotePort, out FrontendPort? fp))
            {
                return Errno.EINVAL;
            }

            if (fp.Domid != remoteDomain || fp.Bound is not null)
            {
                return Errno.EINVAL;
            }

            localPort = _nextBackendPort++;
            fp.Bound = (channel, localPort);
            channel.AddRemote(localPort, remotePort);
            return 0;
        }
    }

    internal void Unbind(uint remotePort)
    {
        lock (_lock)
        {
            if (_frontendPorts.TryGetValue(remotePort, out FrontendPort? fp))
            {
                fp.Bound = null;
            }
        }
    }

    internal void NotifyFrontend(uint remotePort)
    {
        Action? notify;
        lock (_lock)
        {
            notify = _frontendPorts.TryGetValue(remotePort, out FrontendPort? fp) ? fp.OnNotified : null;
        }

        notify?.Invoke();
    }

    public void Dispose()
    {
        GuestView.Dispose();
        Memory.Dispose();
    }

    private const int ESRCH = 3;

    internal readonly record struct Grant(ushort Domid, int Page, bool ReadOnly);

    private sealed class FrontendPort(ushort domid, Action onNotified)
    {
        public ushort Domid { get; } = domid;

        public Action OnNotified { get; } = onNotified;

        public (FakeEventChannel Channel, uint LocalPort)? Bound { get; set; }
    }
}
