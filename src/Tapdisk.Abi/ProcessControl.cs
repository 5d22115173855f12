using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>Process-level calls a daemon needs: a new session, stdio redirection, its user, when a process started.</summary>
public static class ProcessControl
{
    /// <summary>setsid(2): leave the caller's session and process group (so its terminal signals don't reach us).</summary>
    public static void NewSession()
    {
        // EPERM means we already lead a process group; that is as detached as we need to be.
        if (Interop.Libc.Setsid() < 0 && Marshal.GetLastPInvokeError() != Errno.EPERM)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, "setsid");
        }
    }

    /// <summary>Points fds 0, 1 and 2 at /dev/null, as daemon(3) does, once the spawner has read our control path.</summary>
    public static void RedirectStdioToDevNull()
    {
        using SafeFdHandle devNull = PosixFile.Open("/dev/null", OpenFlags.ReadWrite);
        for (int fd = 0; fd <= 2; fd++)
        {
            if (Interop.Libc.Dup2(devNull.Fd, fd) < 0)
            {
                throw new ErrnoIOException(Marshal.GetLastPInvokeError(), "/dev/null", "dup2");
            }
        }
    }

    /// <summary>geteuid(2).</summary>
    public static uint EffectiveUserId => Interop.Libc.Geteuid();

    /// <summary>
    /// When process <paramref name="pid"/> started (field 22 of /proc/&lt;pid&gt;/stat: clock ticks since boot), or -1 if
    /// there is no such process. With the pid it names one process: a pid the kernel reuses gets another start time.
    /// </summary>
    public static long StartTime(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }

        // "pid (comm) state ...": comm may hold spaces and parentheses, so count from the last ')'; the state is field 3.
        int close = text.LastIndexOf(')');
        string[] fields = close < 0 || close + 2 > text.Length ? [] : text[(close + 2)..].Split(' ');
        return fields.Length > 19 && long.TryParse(fields[19], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long ticks) ? ticks : -1;
    }
}
