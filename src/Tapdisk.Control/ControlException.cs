namespace Tapdisk.Control;

/// <summary>A control exchange failed; <see cref="Errno"/> is what tap-ctl exits with.</summary>
public sealed class ControlException : Exception
{
    public ControlException(int errno, string message)
        : base(message)
    {
        Errno = errno;
    }

    public ControlException()
        : this(5, "control exchange failed")
    {
    }

    public ControlException(string message)
        : this(5, message)
    {
    }

    public ControlException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errno = 5;
    }

    public int Errno { get; }
}
