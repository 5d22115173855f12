namespace Tapdisk.Blkif;

/// <summary>A ring could not be connected; <see cref="Errno"/> is the positive errno the control reply carries.</summary>
public sealed class BlkifConnectException : Exception
{
    public BlkifConnectException(int errno, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Errno = errno;
    }

    public BlkifConnectException()
        : this(Abi.Errno.EINVAL, "blkif connect failed")
    {
    }

    public BlkifConnectException(string message)
        : this(Abi.Errno.EINVAL, message)
    {
    }

    public BlkifConnectException(string message, Exception innerException)
        : this(Abi.Errno.EINVAL, message, innerException)
    {
    }

    public int Errno { get; }
}
