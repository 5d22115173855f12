namespace Tapdisk.Storage;

/// <summary>An image could not be opened for a reason other than its format (missing parent, wrong driver, loop).</summary>
public sealed class ImageOpenException : Exception
{
    public ImageOpenException(string path, int errno, string problem)
        : base($"{path}: {problem}")
    {
        FilePath = path;
        Errno = errno;
    }

    public ImageOpenException()
        : this(string.Empty, Abi.Errno.EINVAL, "cannot open")
    {
    }

    public ImageOpenException(string message)
        : base(message)
    {
        FilePath = string.Empty;
        Errno = Abi.Errno.EINVAL;
    }

    public ImageOpenException(string message, Exception innerException)
        : base(message, innerException)
    {
        FilePath = string.Empty;
        Errno = Abi.Errno.EINVAL;
    }

    public string FilePath { get; }

    public int Errno { get; }
}
