using System.Globalization;

namespace Tapdisk;

/// <summary>
/// The largest listen(2) backlog the kernel grants: net.core.somaxconn, read when asked (it is per network namespace
/// and may change). A burst of clients beyond the backlog fails at once with EAGAIN on a non-blocking UNIX connect.
/// One source file compiled into each project that listens (Nbd, Control): Control references nothing but the BCL
/// (STYLE.md section 2), so it cannot share a type with the others.
/// </summary>
internal static class ListenBacklog
{
    /// <summary>Used when somaxconn cannot be read: the kernel's default since Linux 5.4 (it caps larger values anyway).</summary>
    public const int Fallback = 4096;

    private const string SomaxconnPath = "/proc/sys/net/core/somaxconn";

    /// <summary>net.core.somaxconn now, or <see cref="Fallback"/> if it cannot be read.</summary>
    public static int Maximum
    {
        get
        {
            try
            {
                return Parse(File.ReadAllText(SomaxconnPath));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Fallback;
            }
        }
    }

    /// <summary>The backlog a somaxconn file's text allows; <see cref="Fallback"/> for anything but a positive number.</summary>
    public static int Parse(string? text) =>
        int.TryParse(text, NumberStyles.None | NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite, CultureInfo.InvariantCulture, out int value) && value > 0
            ? value
            : Fallback;
}
