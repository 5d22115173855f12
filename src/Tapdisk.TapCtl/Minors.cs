using Tapdisk.Abi;
using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>
/// Minor markers under &lt;root&gt;/tapdisk (control-xen.md 5.5): allocate and free hold flock(LOCK_EX) on the
/// directory; a tapdisk holds flock(LOCK_EX) on the marker while the minor is attached, so free refuses then.
/// </summary>
internal static class Minors
{
    /// <summary>Minors are 0..16383, as in blktap.</summary>
    public const int MaxMinors = 16384;

    private const int DirectoryMode = 0x1C0; // 0700
    private const int MarkerMode = 0x180;    // 0600
    private const OpenFlags WriteOnly = (OpenFlags)0x1;

    /// <summary>Creates the lowest free marker and returns its minor.</summary>
    public static int Allocate()
    {
        string dir = ControlPaths.MinorDirectory;
        try
        {
            Directory.CreateDirectory(dir, (UnixFileMode)DirectoryMode);
        }
        catch (IOException e)
        {
            throw new TapCtlException(e.HResult is > 0 and < 256 ? e.HResult : ErrnoText.EIO, e.Message);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new TapCtlException(13, e.Message);
        }

        using SafeFdHandle lockFd = LockDirectory(dir);
        for (int minor = 0; minor < MaxMinors; minor++)
        {
            string marker = ControlPaths.MinorMarker(minor);
            if (Path.Exists(marker))
            {
                continue;
            }

            int errno = PosixFile.TryOpen(marker, WriteOnly | OpenFlags.Create, MarkerMode, out SafeFdHandle fd);
            fd.Dispose();
            if (errno != 0)
            {
                throw new TapCtlException(errno, "create " + marker);
            }

            return minor;
        }

        // Deliberate difference: the reference returns success and prints "(null)" when every minor is taken.
        throw new TapCtlException(ErrnoText.ENOSPC, "no free minor");
    }

    /// <summary>Removes a marker unless a tapdisk holds its lock (EAGAIN) or it does not exist (ENOENT).</summary>
    public static void Free(int minor)
    {
        string dir = ControlPaths.MinorDirectory;
        using SafeFdHandle lockFd = LockDirectory(dir);
        string marker = ControlPaths.MinorMarker(minor);
        int errno = PosixFile.TryOpen(marker, OpenFlags.ReadOnly, 0, out SafeFdHandle fd);
        using (fd)
        {
            if (errno != 0)
            {
                throw new TapCtlException(errno, "open " + marker);
            }

            errno = PosixFile.TryLock(fd, exclusive: true);
            if (errno != 0)
            {
                throw new TapCtlException(errno, "lock " + marker);
            }

            try
            {
                File.Delete(marker);
            }
            catch (IOException e)
            {
                throw new TapCtlException(ErrnoText.EIO, e.Message);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new TapCtlException(13, e.Message);
            }
        }
    }

    /// <summary>All marker minors in glob order (lexicographic file names, as glob(3) in the C locale).</summary>
    public static List<int> Scan()
    {
        var minors = new List<int>();
        if (!Directory.Exists(ControlPaths.MinorDirectory))
        {
            return minors;
        }

        string[] names = Directory.GetFiles(ControlPaths.MinorDirectory, "tapdisk*").Select(Path.GetFileName).OfType<string>().ToArray();
        Array.Sort(names, StringComparer.Ordinal);
        foreach (string name in names)
        {
            if (ControlPaths.TryParseMinorMarker(name, out int minor))
            {
                minors.Add(minor);
            }
        }

        return minors;
    }

    /// <summary>
    /// Blocking flock(LOCK_EX) on the directory. Abi exposes only the non-blocking form, so this polls; the lock is
    /// held for microseconds by other tap-ctl processes, so the wait is short.
    /// </summary>
    private static SafeFdHandle LockDirectory(string dir)
    {
        int errno = PosixFile.TryOpen(dir, OpenFlags.ReadOnly, 0, out SafeFdHandle fd);
        if (errno != 0)
        {
            fd.Dispose();
            throw new TapCtlException(errno, "open " + dir);
        }

        while ((errno = PosixFile.TryLock(fd, exclusive: true)) != 0)
        {
            if (errno is not (ErrnoText.EAGAIN or ErrnoText.EINTR))
            {
                fd.Dispose();
                throw new TapCtlException(errno, "lock " + dir);
            }

            Thread.Sleep(5);
        }

        return fd;
    }
}
