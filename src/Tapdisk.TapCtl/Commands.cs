using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>
/// The tap-ctl subcommands other than list (control-xen.md 5.2). Each returns 0 or a positive errno; "-h" prints the
/// usage on stdout (attach: stderr) and returns 0; a bad option or a missing required one prints the usage on stderr
/// and returns EINVAL.
/// </summary>
internal static class Commands
{
    private const int KeyReadSize = 1024;

    public static int Allocate(string[] args)
    {
        var getopt = new GetOpt("allocate", args, "h");
        while (getopt.Next() is char c)
        {
            return c == 'h' ? Help(Usage.Allocate) : UsageError(Usage.Allocate);
        }

        int minor = Minors.Allocate();
        Terminal.Out(ControlPaths.MinorMarker(minor) + "\n");
        return 0;
    }

    public static int Free(string[] args)
    {
        int minor = -1;
        var getopt = new GetOpt("free", args, "m:h");
        while (getopt.Next() is char c)
        {
            switch (c)
            {
                case 'm':
                    minor = GetOpt.Atoi(getopt.Argument);
                    break;
                case 'h':
                    return Help(Usage.Free);
                default:
                    return UsageError(Usage.Free);
            }
        }

        if (minor == -1)
        {
            return UsageError(Usage.Free);
        }

        Minors.Free(minor);
        return 0;
    }

    public static int Spawn(string[] args)
    {
        var getopt = new GetOpt("spawn", args, "h");
        while (getopt.Next() is char c)
        {
            return c == 'h' ? Help(Usage.Spawn) : UsageError(Usage.Spawn);
        }

        int pid = Spawner.Spawn();
        Terminal.Out(Terminal.StdoutIsTty ? $"tapdisk spawned with pid {GetOpt.Format(pid)}\n" : GetOpt.Format(pid) + "\n");
        return 0;
    }

    public static int Attach(string[] args)
    {
        // The reference prints attach's -h usage on stderr (reference-transcript.md 1).
        if (!ParsePidMinor("attach", args, "p:m:h", Usage.Attach, helpOnStderr: true, out int pid, out int minor, out int status, null))
        {
            return status;
        }

        return Tapdisks.Attach(pid, minor);
    }

    public static int Detach(string[] args)
    {
        if (!ParsePidMinor("detach", args, "p:m:h", Usage.Detach, helpOnStderr: false, out int pid, out int minor, out int status, null))
        {
            return status;
        }

        return Tapdisks.Detach(pid, minor);
    }

    public static int Close(string[] args)
    {
        bool force = false;
        int timeoutSeconds = 0;
        bool Extra(char c, string? arg)
        {
            switch (c)
            {
                case 'f':
                    force = true;
                    return true;
                case 't':
                    timeoutSeconds = GetOpt.Atoi(arg);
                    return true;
                default:
                    return false;
            }
        }

        if (!ParsePidMinor("close", args, "p:m:ft:h", Usage.Close, helpOnStderr: false, out int pid, out int minor, out int status, Extra))
        {
            return status;
        }

        return Tapdisks.Close(pid, minor, force, Timeout(timeoutSeconds));
    }

    public static int Pause(string[] args)
    {
        // Deliberate difference: the reference's "-t" falls through to the usage error (any -t exits 22,
        // control-xen.md 5.2); we honour it as a total timeout for the exchange, as close -t is.
        if (!ParsePidMinorTimeout("pause", args, Usage.Pause, out int pid, out int minor, out TimeSpan? timeout, out int status))
        {
            return status;
        }

        return Tapdisks.Pause(pid, minor, timeout);
    }

    public static int Unpause(string[] args)
    {
        string? image = null;
        string? secondary = null;
        string? logPath = null;
        bool Extra(char c, string? arg)
        {
            switch (c)
            {
                case 'a':
                    image = arg;
                    return true;
                case '2':
                    secondary = arg;
                    return true;
                case 'c':
                    logPath = arg;
                    return true;
                default:
                    return false;
            }
        }

        if (!ParsePidMinor("unpause", args, "p:m:a:2:c:h", Usage.Unpause, helpOnStderr: false, out int pid, out int minor, out int status, Extra))
        {
            return status;
        }

        return Tapdisks.Unpause(pid, minor, image, secondary, logPath);
    }

    public static int Stats(string[] args)
    {
        if (!ParsePidMinor("stats", args, "p:m:h", Usage.Stats, helpOnStderr: false, out int pid, out int minor, out int status, null))
        {
            return status;
        }

        // As the reference: an ERROR reply prints "\n\n" and exits 0 (control-xen.md 6.1, reference-transcript.md 2.6);
        // the transcript is the contract here, so the error is not turned into an exit status.
        Tapdisks.Stats(pid, minor);
        Terminal.Out("\n");
        return 0;
    }

    public static int Open(string[] args)
    {
        var p = new VbdParams();
        bool Extra(char c, string? arg)
        {
            if (c == 'E')
            {
                p.Key = ReadKey(p.Key is not null);
                return true;
            }

            return ParseVbdOption(p, c, arg);
        }

        if (!ParsePidMinor("open", args, "a:RDe:r2:st:C:Ep:m:h", Usage.Open, helpOnStderr: false, out int pid, out int minor, out int status, Extra))
        {
            return status;
        }

        if (p.Args is null)
        {
            return UsageError(Usage.Open);
        }

        return Tapdisks.Open(pid, minor, p);
    }

    public static int Create(string[] args)
    {
        var p = new VbdParams();
        var getopt = new GetOpt("create", args, "a:RDd:e:r2:st:C:h");
        while (getopt.Next() is char c)
        {
            if (c == 'h')
            {
                return Help(Usage.Create);
            }

            if (c == 'd')
            {
                // Accepted and ignored, as in the reference: the marker path is printed regardless.
                continue;
            }

            if (!ParseVbdOption(p, c, getopt.Argument))
            {
                return UsageError(Usage.Create);
            }
        }

        if (p.Args is null)
        {
            return UsageError(Usage.Create);
        }

        // control-xen.md 5.4: allocate, spawn, ATTACH, OPEN; each failure unwinds what came before it and the first
        // error is the one reported. A failed ATTACH leaves the spawned tapdisk running, as the reference does.
        int minor = Minors.Allocate();
        int pid;
        try
        {
            pid = Spawner.Spawn();
        }
        catch (TapCtlException)
        {
            FreeQuietly(minor);
            throw;
        }

        int ret;
        try
        {
            ret = Tapdisks.Attach(pid, minor);
        }
        catch (ControlException)
        {
            FreeQuietly(minor);
            throw;
        }

        if (ret != 0)
        {
            FreeQuietly(minor);
            return ret;
        }

        try
        {
            ret = Tapdisks.Open(pid, minor, p);
        }
        catch (ControlException e)
        {
            ret = e.Errno;
        }

        if (ret != 0)
        {
            DetachQuietly(pid, minor);
            FreeQuietly(minor);
            return ret;
        }

        Terminal.Out(ControlPaths.MinorMarker(minor) + "\n");
        return 0;
    }

    public static int Destroy(string[] args)
    {
        if (!ParsePidMinorTimeout("destroy", args, Usage.Destroy, out int pid, out int minor, out TimeSpan? timeout, out int status))
        {
            return status;
        }

        // -t bounds the CLOSE only (control-xen.md 5.2).
        int ret = Tapdisks.Close(pid, minor, force: false, timeout);
        if (ret != 0)
        {
            return ret;
        }

        ret = Tapdisks.Detach(pid, minor);
        if (ret != 0)
        {
            return ret;
        }

        Minors.Free(minor);
        return 0;
    }

    /// <summary>The options shared by create and open.</summary>
    private static bool ParseVbdOption(VbdParams p, char c, string? arg)
    {
        switch (c)
        {
            case 'a':
                p.Args = arg;
                return true;
            case 'R':
                p.Flags.Add(TapdiskOpenFlags.ReadOnly);
                return true;
            case 'D':
                p.Flags.Add(TapdiskOpenFlags.NoODirect);
                return true;
            case 'r':
                p.Flags.Add(TapdiskOpenFlags.AddLcache);
                return true;
            case 'e':
                p.Flags.Add(TapdiskOpenFlags.ReuseParent);
                p.ParentMinor = GetOpt.Atoi(arg);
                return true;
            case '2':
                p.Flags.Add(TapdiskOpenFlags.Secondary);
                p.Secondary = arg;
                return true;
            case 's':
                p.Flags.Add(TapdiskOpenFlags.Standby);
                return true;
            case 't':
                p.RequestTimeoutSeconds = unchecked((ushort)GetOpt.Atoi(arg));
                return true;
            case 'C':
                p.LogPath = arg;
                return true;
            default:
                return false;
        }
    }

    /// <summary>-E: one read(0, buf, 1024); exactly 32 or 64 bytes of raw key (control-xen.md 5.2).</summary>
    private static byte[] ReadKey(bool alreadyRead)
    {
        if (alreadyRead)
        {
            Terminal.Error("Only supply -E once\n");
            throw new TapCtlException(1, "-E twice", quiet: true);
        }

        byte[] buffer = new byte[KeyReadSize];
        int n;
        try
        {
            using Stream stdin = Terminal.OpenStdin();
            n = stdin.Read(buffer, 0, buffer.Length);
        }
        catch (IOException)
        {
            n = 0;
        }

        if (n is not (32 or 64))
        {
            Terminal.Error("Unsupported keysize, use either 256 bit or 512 bit key\n");
            throw new TapCtlException(1, "bad key size", quiet: true);
        }

        return buffer[..n];
    }

    /// <summary>
    /// getopt loop for commands taking -p and -m (required; -1 counts as missing) plus command-specific options
    /// handled by <paramref name="extra"/>. False means "return <paramref name="status"/> now".
    /// </summary>
    private static bool ParsePidMinor(
        string command,
        string[] args,
        string optstring,
        string usage,
        bool helpOnStderr,
        out int pid,
        out int minor,
        out int status,
        Func<char, string?, bool>? extra)
    {
        pid = -1;
        minor = -1;
        var getopt = new GetOpt(command, args, optstring);
        while (getopt.Next() is char c)
        {
            switch (c)
            {
                case 'p':
                    pid = GetOpt.Atoi(getopt.Argument);
                    break;
                case 'm':
                    minor = GetOpt.Atoi(getopt.Argument);
                    break;
                case 'h':
                    if (helpOnStderr)
                    {
                        Terminal.Error(usage);
                        status = 0;
                    }
                    else
                    {
                        status = Help(usage);
                    }

                    return false;
                default:
                    if (c == GetOpt.Error || extra is null || !extra(c, getopt.Argument))
                    {
                        status = UsageError(usage);
                        return false;
                    }

                    break;
            }
        }

        if (pid == -1 || minor == -1)
        {
            status = UsageError(usage);
            return false;
        }

        status = 0;
        return true;
    }

    private static TimeSpan? Timeout(int seconds) => seconds > 0 ? TimeSpan.FromSeconds(seconds) : null;

    /// <summary>-p PID -m MINOR [-t SECONDS]: the options pause and destroy share.</summary>
    private static bool ParsePidMinorTimeout(string command, string[] args, string usage, out int pid, out int minor, out TimeSpan? timeout, out int status)
    {
        int timeoutSeconds = 0;
        bool Extra(char c, string? arg)
        {
            if (c != 't')
            {
                return false;
            }

            timeoutSeconds = GetOpt.Atoi(arg);
            return true;
        }

        bool parsed = ParsePidMinor(command, args, "p:m:t:h", usage, helpOnStderr: false, out pid, out minor, out status, Extra);
        timeout = Timeout(timeoutSeconds);
        return parsed;
    }

    private static int Help(string usage)
    {
        Terminal.Out(usage);
        return 0;
    }

    private static int UsageError(string usage)
    {
        Terminal.Error(usage);
        return ErrnoText.EINVAL;
    }

    private static void FreeQuietly(int minor)
    {
        try
        {
            Minors.Free(minor);
        }
        catch (Exception e) when (e is TapCtlException or IOException)
        {
            // Unwinding a failed create: the first error is the one reported.
        }
    }

    private static void DetachQuietly(int pid, int minor)
    {
        try
        {
            Tapdisks.Detach(pid, minor);
        }
        catch (ControlException)
        {
            // Unwinding a failed create: the first error is the one reported.
        }
    }
}
