namespace Tapdisk.TapCtl;

/// <summary>strerror(3) in the C locale for the errnos tap-ctl can exit with; the tool prints only this text.</summary>
internal static class ErrnoText
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EAGAIN = 11;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int EPROTO = 71;
    public const int ECONNRESET = 104;
    public const int ETIMEDOUT = 110;
    public const int ECONNREFUSED = 111;
    public const int EALREADY = 114;
    public const int EMEDIUMTYPE = 124;
    public const int ENOKEY = 126;
    public const int EKEYREJECTED = 129;

    public static string Describe(int errno) => errno switch
    {
        EPERM => "Operation not permitted",
        ENOENT => "No such file or directory",
        3 => "No such process",
        EINTR => "Interrupted system call",
        EIO => "Input/output error",
        6 => "No such device or address",
        7 => "Argument list too long",
        8 => "Exec format error",
        9 => "Bad file descriptor",
        EAGAIN => "Resource temporarily unavailable",
        12 => "Cannot allocate memory",
        13 => "Permission denied",
        EBUSY => "Device or resource busy",
        EEXIST => "File exists",
        ENODEV => "No such device",
        20 => "Not a directory",
        21 => "Is a directory",
        EINVAL => "Invalid argument",
        24 => "Too many open files",
        27 => "File too large",
        ENOSPC => "No space left on device",
        30 => "Read-only file system",
        32 => "Broken pipe",
        34 => "Numerical result out of range",
        ENAMETOOLONG => "File name too long",
        ENOSYS => "Function not implemented",
        40 => "Too many levels of symbolic links",
        EPROTO => "Protocol error",
        75 => "Value too large for defined data type",
        93 => "Protocol not supported",
        95 => "Operation not supported",
        ECONNRESET => "Connection reset by peer",
        ETIMEDOUT => "Connection timed out",
        ECONNREFUSED => "Connection refused",
        EALREADY => "Operation already in progress",
        EMEDIUMTYPE => "Wrong medium type",
        ENOKEY => "Required key not available",
        127 => "Key has expired",
        128 => "Key has been revoked",
        EKEYREJECTED => "Key was rejected by service",
        _ => "Unknown error " + errno.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
