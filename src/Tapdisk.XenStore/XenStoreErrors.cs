namespace Tapdisk.XenStore;

/// <summary>xenstored's error names (<c>xsd_errors</c>) and the errno each stands for (control-xen.md Part II 5.2).</summary>
public static class XenStoreErrors
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int E2BIG = 7;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int ENOSYS = 38;
    public const int ENOTEMPTY = 39;
    public const int EISCONN = 106;

    private static readonly (string Name, int Errno)[] s_table =
    [
        ("EINVAL", EINVAL), ("EACCES", EACCES), ("EEXIST", EEXIST), ("EISDIR", EISDIR), ("ENOENT", ENOENT),
        ("ENOMEM", ENOMEM), ("ENOSPC", ENOSPC), ("EIO", EIO), ("ENOTEMPTY", ENOTEMPTY), ("ENOSYS", ENOSYS),
        ("EROFS", EROFS), ("EBUSY", EBUSY), ("EAGAIN", EAGAIN), ("EISCONN", EISCONN), ("E2BIG", E2BIG), ("EPERM", EPERM),
    ];

    /// <summary>The errno for an error name; an unknown name counts as EINVAL, as libxenstore reads it.</summary>
    public static int ToErrno(string name)
    {
        foreach ((string n, int errno) in s_table)
        {
            if (n == name)
            {
                return errno;
            }
        }

        return EINVAL;
    }

    /// <summary>The name xenstored sends for an errno; EINVAL for anything outside the table.</summary>
    public static string ToName(int errno)
    {
        foreach ((string n, int e) in s_table)
        {
            if (e == errno)
            {
                return n;
            }
        }

        return "EINVAL";
    }
}
