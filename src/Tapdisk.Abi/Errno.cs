namespace Tapdisk.Abi;

/// <summary>Linux errno values used across layers (asm-generic/errno-base.h, errno.h).</summary>
public static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int E2BIG = 7;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EFAULT = 14;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int ENOTTY = 25;
    public const int EFBIG = 27;
    public const int ENOSPC = 28;
    public const int ESPIPE = 29;
    public const int EROFS = 30;
    public const int EPIPE = 32;
    public const int ERANGE = 34;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int ELOOP = 40;
    public const int ENODATA = 61;
    public const int EOVERFLOW = 75;
    public const int EOPNOTSUPP = 95;
    public const int ECONNRESET = 104;
    public const int ETIMEDOUT = 110;
    public const int ESHUTDOWN = 108;
    public const int ENOKEY = 126;
    public const int EKEYREJECTED = 129;

    /// <summary>Short description of an errno, as strerror(3) would give it (C locale).</summary>
    public static string Describe(int errno) => errno switch
    {
        EPERM => "Operation not permitted",
        ENOENT => "No such file or directory",
        EINTR => "Interrupted system call",
        EIO => "Input/output error",
        ENXIO => "No such device or address",
        EBADF => "Bad file descriptor",
        EAGAIN => "Resource temporarily unavailable",
        ENOMEM => "Cannot allocate memory",
        EACCES => "Permission denied",
        EBUSY => "Device or resource busy",
        EEXIST => "File exists",
        ENODEV => "No such device",
        ENOTDIR => "Not a directory",
        EISDIR => "Is a directory",
        EINVAL => "Invalid argument",
        EMFILE => "Too many open files",
        ENOTTY => "Inappropriate ioctl for device",
        EFBIG => "File too large",
        ENOSPC => "No space left on device",
        EROFS => "Read-only file system",
        EPIPE => "Broken pipe",
        ERANGE => "Numerical result out of range",
        ENAMETOOLONG => "File name too long",
        ENOSYS => "Function not implemented",
        ELOOP => "Too many levels of symbolic links",
        ENODATA => "No data available",
        EOVERFLOW => "Value too large for defined data type",
        EOPNOTSUPP => "Operation not supported",
        ECONNRESET => "Connection reset by peer",
        ETIMEDOUT => "Connection timed out",
        ENOKEY => "Required key not available",
        EKEYREJECTED => "Key was rejected by service",
        _ => $"Unknown error {errno}",
    };
}
