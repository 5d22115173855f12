using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>Maps exceptions from drivers to a positive errno, for protocol layers to translate into wire codes.</summary>
public static class StorageErrors
{
    public static int ToErrno(Exception exception) => exception switch
    {
        ErrnoIOException e => e.Errno,
        ImageOpenException e => e.Errno,
        ImageFormatException => Errno.EINVAL,
        UnauthorizedAccessException => Errno.EACCES,
        FileNotFoundException or DirectoryNotFoundException => Errno.ENOENT,
        ArgumentException => Errno.EINVAL,
        NotSupportedException => Errno.EOPNOTSUPP,
        OperationCanceledException => Errno.EINTR,
        ObjectDisposedException => Errno.ESHUTDOWN,
        _ => Errno.EIO,
    };

    /// <summary>Throws EPERM for a write to a read-only image.</summary>
    public static ErrnoIOException ReadOnly(string path) => new(Errno.EPERM, path, "write to read-only image");
}
