namespace Tapdisk.Abi;

/// <summary>An I/O failure reported by the kernel, carrying the errno and the path it concerned.</summary>
public sealed class ErrnoIOException : IOException
{
    public ErrnoIOException(int errno, string? path, string operation)
        : base(path is null ? $"{operation}: {Abi.Errno.Describe(errno)}" : $"{operation} {path}: {Abi.Errno.Describe(errno)}")
    {
        Errno = errno;
        Path = path;
        HResult = errno;
    }

    public ErrnoIOException()
        : this(Abi.Errno.EIO, null, "I/O")
    {
    }

    public ErrnoIOException(string message)
        : base(message)
    {
        Errno = Abi.Errno.EIO;
    }

    public ErrnoIOException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errno = Abi.Errno.EIO;
    }

    public int Errno { get; }

    public string? Path { get; }
}
