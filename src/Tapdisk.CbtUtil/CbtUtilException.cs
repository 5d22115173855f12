namespace Tapdisk.CbtUtil;

/// <summary>A failure cbt-util reports: the exact stderr text (blktap's words, newline included or not) and the exit code.</summary>
internal sealed class CbtUtilException : Exception
{
    public CbtUtilException(int exitCode, string text)
        : base(text)
    {
        ExitCode = exitCode;
    }

    public CbtUtilException()
    {
    }

    public CbtUtilException(string message)
        : base(message)
    {
    }

    public CbtUtilException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public int ExitCode { get; } = Tapdisk.Abi.Errno.EIO;
}
