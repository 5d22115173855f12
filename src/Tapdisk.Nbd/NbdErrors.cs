using Tapdisk.Abi;

namespace Tapdisk.Nbd;

/// <summary>Translates a positive errno into the NBD error values (proto.md: only a few are defined on the wire).</summary>
public static class NbdErrors
{
    public static uint FromErrno(int errno) => errno switch
    {
        0 => 0,
        Errno.EPERM or Errno.EACCES or Errno.EROFS => NbdProtocol.NBD_EPERM,
        Errno.ENOMEM => NbdProtocol.NBD_ENOMEM,
        Errno.EINVAL or Errno.ERANGE or Errno.E2BIG => NbdProtocol.NBD_EINVAL,
        Errno.ENOSPC or Errno.EFBIG or EDQUOT => NbdProtocol.NBD_ENOSPC,
        Errno.EOVERFLOW => NbdProtocol.NBD_EOVERFLOW,
        Errno.EOPNOTSUPP or Errno.ENOSYS => NbdProtocol.NBD_ENOTSUP,
        Errno.ESHUTDOWN or Errno.EINTR => NbdProtocol.NBD_ESHUTDOWN,
        _ => NbdProtocol.NBD_EIO,
    };

    /// <summary>Maps a driver exception through <see cref="Storage.StorageErrors.ToErrno"/> to an NBD error value.</summary>
    public static uint FromException(Exception exception) => FromErrno(Storage.StorageErrors.ToErrno(exception));

    private const int EDQUOT = 122;
}
