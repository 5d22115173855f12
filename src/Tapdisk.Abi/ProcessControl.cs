using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>Process-level syscalls a daemon needs: a new session, stdio redirection, whether a process lives.</summary>
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

    /// <summary>kill(pid, 0): true while a process with that id exists (one we may not signal counts too).</summary>
    public static bool Exists(int pid) => pid > 0 && (Interop.Libc.Kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == Errno.EPERM);
}
