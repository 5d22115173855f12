namespace Tapdisk.XenStore;

/// <summary>The connection to xenstored closed (or could not be made) before the request was answered.</summary>
public sealed class XenStoreConnectionLostException : IOException
{
    public XenStoreConnectionLostException()
        : base("connection to xenstored lost")
    {
    }

    public XenStoreConnectionLostException(string message)
        : base(message)
    {
    }

    public XenStoreConnectionLostException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
