namespace Tapdisk.TapCtl;

/// <summary>
/// A command failed with <see cref="Errno"/> (the exit status). Unless <see cref="Quiet"/>, the strerror text is
/// printed on stderr; quiet failures have already printed their own message.
/// </summary>
internal sealed class TapCtlException : Exception
{
    public TapCtlException(int errno, string message, bool quiet = false)
        : base(message)
    {
        Errno = errno;
        Quiet = quiet;
    }

    public TapCtlException()
        : this(ErrnoText.EIO, "tap-ctl failed")
    {
    }

    public TapCtlException(string message)
        : this(ErrnoText.EIO, message)
    {
    }

    public TapCtlException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errno = ErrnoText.EIO;
    }

    public int Errno { get; }

    public bool Quiet { get; }
}
