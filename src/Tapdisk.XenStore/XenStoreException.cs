namespace Tapdisk.XenStore;

/// <summary>xenstored answered XS_ERROR: <see cref="ErrorName"/> is the string it sent, <see cref="Errno"/> its errno.</summary>
public sealed class XenStoreException : IOException
{
    public XenStoreException(string errorName, string message)
        : base(message)
    {
        ErrorName = errorName;
        Errno = XenStoreErrors.ToErrno(errorName);
        HResult = Errno;
    }

    public XenStoreException()
        : this("EIO", "xenstore request failed")
    {
    }

    public XenStoreException(string message)
        : this("EIO", message)
    {
    }

    public XenStoreException(string message, Exception innerException)
        : base(message, innerException)
    {
        ErrorName = "EIO";
        Errno = XenStoreErrors.EIO;
    }

    public string ErrorName { get; }

    public int Errno { get; }
}
