using Tapdisk.Control;

namespace Tapdisk.Tapback;

/// <summary>
/// The control exchanges tapback makes with a tapdisk (control-xen.md Part II 5.7, 5.8): each one a fresh
/// connection to ctl&lt;pid&gt; with a time budget, so a hung tapdisk cannot stall every other device.
/// </summary>
internal sealed class TapdiskControl(string controlDirectory, TimeSpan timeout)
{
    public const int EALREADY = 114;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int ENODEV = 19;
    public const int EIO = 5;

    /// <summary>PID, then LIST to check the minor exists, then DISK_INFO; throws <see cref="ControlException"/> (ESRCH if the pid does not answer as itself).</summary>
    public TapdiskDisk Probe(int pid, int minor)
    {
        TapdiskMessage pidReply = Exchange(pid, new TapdiskMessage(TapdiskMessageType.Pid, 0));
        if (pidReply.Type != TapdiskMessageType.PidResponse || pidReply.Pid != pid)
        {
            throw new ControlException(ESRCH, $"tapdisk ctl{pid} answered PID with {TapdiskMessage.Name(pidReply.Type)} pid {pidReply.Pid}");
        }

        if (!ListHasMinor(pid, minor))
        {
            throw new ControlException(ENODEV, $"tapdisk {pid} has no minor {minor}");
        }

        TapdiskMessage info = Exchange(pid, new TapdiskMessage(TapdiskMessageType.DiskInfo, (ushort)minor));
        if (info.Type != TapdiskMessageType.DiskInfoResponse)
        {
            throw Failure(info, $"DISK_INFO minor {minor}");
        }

        return new TapdiskDisk(pid, minor, info.ImageSectors, info.ImageSectorSize, info.ImageInfo);
    }

    /// <summary>XENBLKIF_CONNECT; EALREADY (the ring is already up, e.g. after a tapback restart) counts as success.</summary>
    public void Connect(TapdiskDisk disk, uint frontendDomain, uint deviceId, FrontendRing ring, uint pollDuration, uint pollIdleThreshold)
    {
        var request = new TapdiskMessage(TapdiskMessageType.XenblkifConnect, (ushort)disk.Minor)
        {
            BlkifDomid = frontendDomain,
            BlkifDevid = deviceId,
            BlkifOrder = ring.Order,
            BlkifProto = (uint)ring.Protocol,
            BlkifPool = string.Empty,
            BlkifPort = ring.EventChannel,
            BlkifPollDuration = pollDuration,
            BlkifPollIdleThreshold = pollIdleThreshold,
        };
        for (int i = 0; i < ring.RingRefs.Length; i++)
        {
            request.SetBlkifGref(i, ring.RingRefs[i]);
        }

        TapdiskMessage reply = Exchange(disk.Pid, request);
        if (reply.Type == TapdiskMessageType.XenblkifConnectResponse || (reply.Type == TapdiskMessageType.Error && reply.ResponseError == EALREADY))
        {
            return;
        }

        throw Failure(reply, "XENBLKIF_CONNECT");
    }

    /// <summary>XENBLKIF_DISCONNECT; a ring or tapdisk that is already gone (ENODEV, ESRCH, ENOENT) counts as success.</summary>
    public void Disconnect(TapdiskDisk disk, uint frontendDomain, uint deviceId)
    {
        var request = new TapdiskMessage(TapdiskMessageType.XenblkifDisconnect, (ushort)disk.Minor) { BlkifDomid = frontendDomain, BlkifDevid = deviceId };
        TapdiskMessage reply;
        try
        {
            reply = Exchange(disk.Pid, request);
        }
        catch (ControlException e) when (e.Errno is ENOENT or ESRCH or 111 /* ECONNREFUSED: its socket outlived it */)
        {
            return;
        }

        if (reply.Type == TapdiskMessageType.XenblkifDisconnectResponse || (reply.Type == TapdiskMessageType.Error && reply.ResponseError is ENODEV or ESRCH or ENOENT))
        {
            return;
        }

        throw Failure(reply, "XENBLKIF_DISCONNECT");
    }

    private bool ListHasMinor(int pid, int minor)
    {
        using ControlClient client = ControlClient.ConnectPath(SocketPath(pid), timeout);
        client.Send(new TapdiskMessage(TapdiskMessageType.List, TapdiskMessage.AllMinors));

        // Entries count down to a terminator with count 0; a bounded loop in case a broken tapdisk never ends it.
        for (int i = 0; i < 65536; i++)
        {
            TapdiskMessage reply = client.Receive();
            if (reply.Type != TapdiskMessageType.ListResponse)
            {
                throw Failure(reply, "LIST");
            }

            if (reply.ListCount <= 0)
            {
                return false;
            }

            if (reply.ListMinor == minor)
            {
                return true;
            }
        }

        return false;
    }

    private TapdiskMessage Exchange(int pid, TapdiskMessage request)
    {
        using ControlClient client = ControlClient.ConnectPath(SocketPath(pid), timeout);
        client.Send(request);
        return client.Receive();
    }

    private string SocketPath(int pid) => Path.Combine(controlDirectory, "ctl" + StrictNumber.Format((ulong)pid));

    private static ControlException Failure(TapdiskMessage reply, string what) => reply.Type == TapdiskMessageType.Error
        ? new ControlException(reply.ResponseError > 0 ? reply.ResponseError : EIO, $"{what}: tapdisk error {reply.ResponseError}")
        : new ControlException(EIO, $"{what}: unexpected reply '{TapdiskMessage.Name(reply.Type)}'");
}
