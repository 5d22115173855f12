namespace Tapdisk.Storage;

/// <summary>An image's on-disk structure is invalid: says which file, field and offset, and what was expected.</summary>
public sealed class ImageFormatException : Exception
{
    public ImageFormatException(string path, long offsetBytes, string field, string problem)
        : base($"{path}: {field} at offset {offsetBytes}: {problem}")
    {
        FilePath = path;
        OffsetBytes = offsetBytes;
        Field = field;
        Problem = problem;
    }

    public ImageFormatException()
        : this(string.Empty, 0, string.Empty, "invalid image")
    {
    }

    public ImageFormatException(string message)
        : base(message)
    {
        FilePath = string.Empty;
        Field = string.Empty;
        Problem = message;
    }

    public ImageFormatException(string message, Exception innerException)
        : base(message, innerException)
    {
        FilePath = string.Empty;
        Field = string.Empty;
        Problem = message;
    }

    public string FilePath { get; }

    public long OffsetBytes { get; }

    public string Field { get; }

    public string Problem { get; }
}
