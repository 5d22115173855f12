using System.Text;
using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>
/// The per-pid control operations of libblktapctl, with the reference's reply interpretation (control-xen.md 3.5).
/// Each returns 0 or a positive errno; transport failures escape as <see cref="ControlException"/>.
/// </summary>
internal static class Tapdisks
{
    /// <summary>Longest params/secondary/log path kept by the reference's 255-byte snprintf.</summary>
    public const int MaxPathBytes = 254;

    /// <summary>Set by --debug: trace each message to stdout as the reference does.</summary>
    public static bool Debug { get; set; }

    public static int GetPid(int pid)
    {
        // The reply type is not checked: the int at union offset 0 is the pid.
        TapdiskMessage reply = Exchange(pid, new TapdiskMessage(TapdiskMessageType.Pid, 0), default, null);
        return reply.Pid;
    }

    public static int Attach(int pid, int minor)
    {
        TapdiskMessage reply = Exchange(pid, new TapdiskMessage(TapdiskMessageType.Attach, (ushort)minor), default, null);
        return reply.Type == TapdiskMessageType.AttachResponse ? Math.Abs(reply.ResponseError) : ErrnoText.EINVAL;
    }

    public static int Detach(int pid, int minor)
    {
        TapdiskMessage reply = Exchange(pid, new TapdiskMessage(TapdiskMessageType.Detach, (ushort)minor), default, null);
        if (reply.Type == TapdiskMessageType.DetachResponse)
        {
            return Math.Abs(reply.ResponseError);
        }

        // The reference prints this one on stdout (reference-transcript.md 2.8, "detach twice").
        Terminal.Out($"got unexpected result '{TapdiskMessage.Name(reply.Type)}' from {GetOpt.Format(pid)}\n");
        return ErrnoText.EINVAL;
    }

    public static int Open(int pid, int minor, VbdParams p)
    {
        var request = new TapdiskMessage(TapdiskMessageType.Open, (ushort)minor);
        TapdiskOpenFlags flags = p.Flags.Value;
        if (p.LogPath is not null)
        {
            flags |= TapdiskOpenFlags.AddLog;
        }

        if (p.Key is not null)
        {
            flags |= TapdiskOpenFlags.OpenEncrypted;
        }

        request.ParamsFlags = flags;
        request.ParamsDevnum = (uint)minor;
        request.ParamsParentMinor = p.ParentMinor;
        request.ParamsRequestTimeout = p.RequestTimeoutSeconds;
        int error = SetPath(p.Args, s => request.ParamsPath = s);
        if (error == 0 && p.Secondary is not null)
        {
            error = SetPath(p.Secondary, s => request.ParamsSecondary = s);
        }

        if (error != 0)
        {
            return error;
        }

        // control-xen.md 2.5: the 256-byte log path, then u8 key length + key, after the 544 bytes.
        var trailer = new List<byte>();
        if (p.LogPath is not null)
        {
            if (!TryLogPathTrailer(p.LogPath, trailer))
            {
                return ErrnoText.ENAMETOOLONG;
            }
        }

        if (p.Key is not null)
        {
            trailer.Add((byte)p.Key.Length);
            trailer.AddRange(p.Key);
        }

        TapdiskMessage reply = Exchange(pid, request, trailer.ToArray(), null);
        return reply.Type switch
        {
            TapdiskMessageType.OpenResponse => 0,
            TapdiskMessageType.Error => Math.Abs(reply.ResponseError),
            _ => ErrnoText.EINVAL,
        };
    }

    public static int Close(int pid, int minor, bool force, TimeSpan? timeout)
    {
        var type = force ? TapdiskMessageType.ForceShutdown : TapdiskMessageType.Close;
        TapdiskMessage reply = Exchange(pid, new TapdiskMessage(type, (ushort)minor), default, timeout);

        // As the reference: CLOSE_RSP or ERROR carry the result; any other reply type counts as success
        // (control-xen.md 3.5). Kept for compatibility; a conforming daemon never sends one.
        return reply.Type is TapdiskMessageType.CloseResponse or TapdiskMessageType.Error ? Math.Abs(reply.ResponseError) : 0;
    }

    public static int Pause(int pid, int minor, TimeSpan? timeout)
    {
        TapdiskMessage reply = Exchange(pid, new TapdiskMessage(TapdiskMessageType.Pause, (ushort)minor), default, timeout);
        return reply.Type is TapdiskMessageType.PauseResponse or TapdiskMessageType.Error ? Math.Abs(reply.ResponseError) : ErrnoText.EINVAL;
    }

    public static int Unpause(int pid, int minor, string? args, string? secondary, string? logPath)
    {
        // RESUME uses the params layout (control-xen.md 2.3); devnum and prt_devnum stay 0 as in the reference's capture.
        var request = new TapdiskMessage(TapdiskMessageType.Resume, (ushort)minor);
        TapdiskOpenFlags flags = TapdiskOpenFlags.None;
        int error = 0;
        if (args is not null)
        {
            error = SetPath(args, s => request.ParamsPath = s);
        }

        if (error == 0 && secondary is not null)
        {
            flags |= TapdiskOpenFlags.Secondary;
            error = SetPath(secondary, s => request.ParamsSecondary = s);
        }

        var trailer = new List<byte>();
        if (error == 0 && logPath is not null)
        {
            flags |= TapdiskOpenFlags.AddLog;
            error = TryLogPathTrailer(logPath, trailer) ? 0 : ErrnoText.ENAMETOOLONG;
        }

        if (error != 0)
        {
            return error;
        }

        request.ParamsFlags = flags;
        TapdiskMessage reply = Exchange(pid, request, trailer.ToArray(), null);
        return reply.Type is TapdiskMessageType.ResumeResponse or TapdiskMessageType.Error ? Math.Abs(reply.ResponseError) : ErrnoText.EINVAL;
    }

    /// <summary>STATS: the header's type is not checked; u.info.length bytes of JSON follow and go to stdout.</summary>
    public static void Stats(int pid, int minor)
    {
        var request = new TapdiskMessage(TapdiskMessageType.Stats, (ushort)minor);
        using ControlClient client = ControlClient.Connect(pid);
        Trace("sending", request);
        client.Send(request);
        TapdiskMessage reply = client.Receive();
        Trace("received", reply);

        // An ERROR reply has 0 in the length slot, so the reference prints nothing and succeeds (control-xen.md 6.1).
        ulong remaining = reply.InfoLength;
        byte[] chunk = new byte[4096];
        while (remaining > 0)
        {
            int n = (int)Math.Min((ulong)chunk.Length, remaining);
            client.ReceiveExactly(chunk.AsSpan(0, n));
            Terminal.OutBytes(chunk.AsSpan(0, n));
            remaining -= (ulong)n;
        }

        Terminal.Out("\n");
    }

    /// <summary>LIST on one connection: entries until count == 0, in the daemon's order; null if the exchange failed.</summary>
    public static List<(int Minor, int State, string Path)>? List(int pid)
    {
        var request = new TapdiskMessage(TapdiskMessageType.List, TapdiskMessage.AllMinors);
        try
        {
            using ControlClient client = ControlClient.Connect(pid, TimeSpan.FromSeconds(10));
            Trace("sending", request);
            client.Send(request);
            var entries = new List<(int, int, string)>();
            while (true)
            {
                TapdiskMessage reply = client.Receive();
                Trace("received", reply);
                if (reply.ListCount == 0)
                {
                    return entries;
                }

                // An ERROR reply is read as an entry too (its count slot holds the errno); the EOF that follows
                // fails the whole LIST, as in the reference.
                entries.Add((reply.ListMinor, reply.ListState, RawListPath(reply)));
            }
        }
        catch (ControlException)
        {
            return null;
        }
    }

    private static string RawListPath(TapdiskMessage reply)
    {
        const int listPathOffset = 8 + 12;
        ReadOnlySpan<byte> slot = reply.Bytes.Slice(listPathOffset, TapdiskMessage.PathLength);
        int nul = slot.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? slot : slot[..nul]);
    }

    private static TapdiskMessage Exchange(int pid, TapdiskMessage request, ReadOnlySpan<byte> trailer, TimeSpan? timeout)
    {
        using ControlClient client = ControlClient.Connect(pid, timeout);
        Trace("sending", request);
        client.Send(request, trailer);
        TapdiskMessage reply = client.Receive();
        Trace("received", reply);
        return reply;
    }

    private static void Trace(string what, TapdiskMessage message)
    {
        if (Debug)
        {
            Terminal.Out($"{what} '{TapdiskMessage.Name(message.Type)}' message (uuid = {message.Cookie})\n");
        }
    }

    /// <summary>
    /// Deliberate difference: the reference keeps 254 characters of a 255-character path and silently drops the last
    /// one (control-xen.md 5.2); we refuse anything longer than 254 bytes with ENAMETOOLONG.
    /// </summary>
    private static int SetPath(string? value, Action<string> set)
    {
        if (value is null)
        {
            return 0;
        }

        if (Encoding.UTF8.GetByteCount(value) > MaxPathBytes)
        {
            return ErrnoText.ENAMETOOLONG;
        }

        set(value);
        return 0;
    }

    private static bool TryLogPathTrailer(string logPath, List<byte> trailer)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(logPath);
        if (bytes.Length > MaxPathBytes)
        {
            return false;
        }

        // Zero-padded to exactly 256 bytes (the reference sends an uninitialised stack buffer after the NUL).
        trailer.AddRange(bytes);
        trailer.AddRange(new byte[TapdiskMessage.PathLength - bytes.Length]);
        return true;
    }
}
