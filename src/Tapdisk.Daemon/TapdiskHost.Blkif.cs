using Microsoft.Extensions.Logging;
using Tapdisk.Abi;
using Tapdisk.Blkif;
using Tapdisk.Control;

namespace Tapdisk.Daemon;

/// <summary>XENBLKIF_CONNECT / XENBLKIF_DISCONNECT (control-xen.md 5.8, 4.2) and the rings' part of pause, resume, close and stats.</summary>
internal sealed partial class TapdiskHost
{
    private const int EPROTONOSUPPORT = 93;

    /// <summary>The devices rings are connected on; tests of the control path substitute fakes.</summary>
    internal IXenDevices XenDevices { get; init; } = Blkif.XenDevices.Default;

    internal BlkifRingOptions RingOptions { get; init; } = new();

    private ILogger? _libraryLogger;

    /// <summary>The one sink for the libraries' events (NBD, blkif, backend): the daemon's stderr + syslog log.</summary>
    private ILogger LibraryLogger => _libraryLogger ??= new DaemonLogger(_log);

    private TapdiskMessage ConnectRing(TapdiskMessage request)
    {
        ushort cookie = request.Cookie;
        uint domid = request.BlkifDomid;
        uint devid = request.BlkifDevid;
        Vbd? vbd = Find(cookie);
        if (vbd is null)
        {
            return Fail(cookie, Errno.ENODEV);
        }

        if (FindRing(domid, devid) is not null)
        {
            // tapback takes EALREADY as success (a reconnect after a state flap).
            return Fail(cookie, EALREADY);
        }

        if (request.BlkifPool is null)
        {
            return Fail(cookie, Errno.EINVAL);
        }

        // tapdisk has no check for a negative order; the unsigned field cast to int makes one invalid here.
        int order = request.BlkifOrder > BlkifRingGeometry.MaxRingPageOrder ? -1 : (int)request.BlkifOrder;
        if (order < 0)
        {
            _log.Error($"minor {cookie}: ring {domid}/{devid}: ring-page-order {request.BlkifOrder} is above {BlkifRingGeometry.MaxRingPageOrder}");
            return Fail(cookie, Errno.EINVAL);
        }

        uint proto = request.BlkifProto;
        if (proto is not ((uint)BlkifProtocol.Native or (uint)BlkifProtocol.X86 or (uint)BlkifProtocol.X64))
        {
            _log.Error($"minor {cookie}: ring {domid}/{devid}: unknown protocol {proto}");
            return Fail(cookie, EPROTONOSUPPORT);
        }

        if (vbd.Backend is null || !vbd.ChainOpen)
        {
            // Attached but not open, or paused with its chain closed: there is no disk to serve.
            _log.Error($"minor {cookie}: ring {domid}/{devid}: the VBD has no open image");
            return Fail(cookie, Errno.ENODEV);
        }

        uint[] refs = new uint[1 << order];
        for (int i = 0; i < refs.Length; i++)
        {
            refs[i] = request.GetBlkifGref(i);
        }

        var parameters = new BlkifConnectParameters(domid, devid, refs, order, (BlkifProtocol)proto, request.BlkifPort);
        BlkifRing ring;
        try
        {
            ring = BlkifRing.Connect(parameters, XenDevices, vbd.Backend, RingOptions, LibraryLogger);
        }
        catch (BlkifConnectException e)
        {
            _log.Error($"minor {cookie}: {e.Message}");
            return Fail(cookie, e.Errno);
        }

        lock (_lock)
        {
            vbd.Rings.Add(ring);
        }

        PublishRingStats(ring);
        return Ok(TapdiskMessageType.XenblkifConnectResponse, cookie);
    }

    private async Task<TapdiskMessage> DisconnectRingAsync(TapdiskMessage request)
    {
        (Vbd Vbd, BlkifRing Ring)? found = FindRing(request.BlkifDomid, request.BlkifDevid);
        if (found is not { } f)
        {
            return Fail(request.Cookie, Errno.ENODEV);
        }

        UnpublishRingStats(f.Ring);
        await f.Ring.DisconnectAsync().ConfigureAwait(false);
        lock (_lock)
        {
            f.Vbd.Rings.Remove(f.Ring);
        }

        return Ok(TapdiskMessageType.XenblkifDisconnectResponse, request.Cookie);
    }

    private (Vbd Vbd, BlkifRing Ring)? FindRing(uint domid, uint devid)
    {
        lock (_lock)
        {
            foreach (Vbd vbd in _vbds)
            {
                foreach (BlkifRing ring in vbd.Rings)
                {
                    if (ring.Domid == domid && ring.Devid == devid)
                    {
                        return (vbd, ring);
                    }
                }
            }
        }

        return null;
    }

    private async Task DisconnectRingsAsync(Vbd vbd)
    {
        BlkifRing[] rings;
        lock (_lock)
        {
            rings = [.. vbd.Rings];
            vbd.Rings.Clear();
        }

        foreach (BlkifRing ring in rings)
        {
            UnpublishRingStats(ring);
            await ring.DisconnectAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The "xenbus" object, present only with a ring connected; one set of keys per ring, as the reference prints them.</summary>
    private static void WriteRingStats(StatsJson json, Vbd vbd)
    {
        if (vbd.Rings.Count == 0)
        {
            return;
        }

        json.BeginObject("xenbus");
        foreach (BlkifRing ring in vbd.Rings)
        {
            BlkifRingStats s = ring.GetStats();
            json.String("pool", "td-xenio-default");
            json.Number("domid", ring.Domid);
            json.Number("devid", ring.Devid);
            json.Pair("reqs", s.RequestsIn, s.ResponsesOut);
            json.Pair("kicks", s.KicksIn, s.KicksOut);
            json.BeginObject("errors");
            json.Number("msg", s.ErrorsMessage);
            json.Number("map", s.ErrorsMap);
            json.Number("vbd", s.ErrorsVbd);
            json.Number("img", s.ErrorsImage);
            json.EndObject();
        }

        json.EndObject();
    }
}
