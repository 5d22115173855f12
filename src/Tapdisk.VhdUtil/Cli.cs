using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>Small helpers shared by the commands.</summary>
internal static class Cli
{
    /// <summary>Usage on stdout and EINVAL, as most vhd-util commands do.</summary>
    public static int UsageError(string usage)
    {
        Console.Out.Write(usage);
        return Errno.EINVAL;
    }

    /// <summary>Failures that come from the image or the file system (reported, never a stack trace).</summary>
    public static bool IsImageError(Exception e) => e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException;

    /// <summary>
    /// Reports an image failure as the reference does (the detail on stderr, "FAILURE: -errno" on stdout) and
    /// returns the errno as the exit code.
    /// </summary>
    public static int ReportImageError(Exception e, string failure)
    {
        int errno = StorageErrors.ToErrno(e);
        Console.Error.WriteLine(e.Message);
        Console.Out.WriteLine($"{failure}: -{errno}");
        return errno;
    }

    /// <summary>
    /// Test hook for crash-safety tests: when TAPDISK_VHD_UTIL_CRASH_AT names a checkpoint ("name" or "name:N" for
    /// its N-th occurrence), the process kills itself with SIGKILL there, as a power cut or kill -9 would.
    /// </summary>
    public static Action<string>? CrashHook()
    {
        string? spec = Environment.GetEnvironmentVariable("TAPDISK_VHD_UTIL_CRASH_AT");
        if (string.IsNullOrEmpty(spec))
        {
            return null;
        }

        string[] parts = spec.Split(':');
        int wanted = parts.Length > 1 && int.TryParse(parts[1], out int n) ? n : 1;
        int seen = 0;
        return name =>
        {
            if (name == parts[0] && ++seen == wanted)
            {
                Console.Out.Flush();
                System.Diagnostics.Process.GetCurrentProcess().Kill();
                Thread.Sleep(Timeout.Infinite);
            }
        };
    }

    /// <summary>Parses a non-negative decimal number as getopt users of strtoul would accept it.</summary>
    public static long? ParseNumber(string? text) =>
        long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v : null;
}
