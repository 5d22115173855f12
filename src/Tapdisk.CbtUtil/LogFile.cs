using Tapdisk.Abi;
using Tapdisk.Filters.Cbt;

namespace Tapdisk.CbtUtil;

/// <summary>
/// A CBT log opened as cbt-util opens it (fopen "r", "r+" or "w+": a directory opens read-only and fails on read),
/// with its failures worded and numbered as blktap's (reference-transcript.md 11.0).
/// </summary>
internal sealed class LogFile : IDisposable
{
    private readonly SafeFdHandle _fd;

    private LogFile(string name, SafeFdHandle fd)
    {
        Name = name;
        _fd = fd;
    }

    public string Name { get; }

    /// <summary>What ferror(3) would say after a failed read: 1 for a read error (EISDIR), 0 for end of file.</summary>
    public int ReadError { get; private set; }

    public static LogFile OpenRead(string name) => Open(name, OpenFlags.ReadOnly);

    public static LogFile OpenReadWrite(string name) => Open(name, OpenFlags.ReadWrite);

    public static LogFile Create(string name) => Open(name, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Truncate);

    /// <summary>The 48-byte header, or null when fewer bytes could be read.</summary>
    public CbtLogHeader? TryReadHeader()
    {
        Span<byte> bytes = stackalloc byte[CbtLogHeader.Size];
        return TryRead(bytes, 0) ? CbtLogHeader.Read(bytes) : null;
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>; a zero-length read fails, as fread(buf, 0, 1) does.</summary>
    public bool TryRead(Span<byte> buffer, long offset)
    {
        if (buffer.IsEmpty)
        {
            return false;
        }

        try
        {
            return PosixFile.Read(_fd, buffer, offset, Name) == buffer.Length;
        }
        catch (ErrnoIOException)
        {
            ReadError = 1;
            return false;
        }
    }

    /// <summary>Writes all of <paramref name="buffer"/> at <paramref name="offset"/>; a zero-length write fails, as fwrite(buf, 0, 1) does.</summary>
    public bool TryWrite(ReadOnlySpan<byte> buffer, long offset)
    {
        if (buffer.IsEmpty)
        {
            return false;
        }

        try
        {
            PosixFile.Write(_fd, buffer, offset, Name);
            return true;
        }
        catch (ErrnoIOException)
        {
            return false;
        }
    }

    public void WriteHeader(CbtLogHeader header)
    {
        byte[] bytes = new byte[CbtLogHeader.Size];
        header.Write(bytes);
        if (!TryWrite(bytes, 0))
        {
            throw new CbtUtilException(Errno.EIO, $"Failed to write CBT metadata to log file {Name}\n");
        }
    }

    /// <summary>A zeroed buffer for a bitmap of <paramref name="bytes"/> bytes, or ENOMEM as malloc's failure.</summary>
    public static byte[] AllocateBitmap(ulong bytes) =>
        bytes > (ulong)Array.MaxLength
            ? throw new CbtUtilException(Errno.ENOMEM, "Failed to allocate memory for bitmap buffer\n")
            : new byte[bytes];

    public void Dispose() => _fd.Dispose();

    private static LogFile Open(string name, OpenFlags flags)
    {
        int errno = PosixFile.TryOpen(name, flags, 0x1B6 /* 0666, less the umask, as fopen */, out SafeFdHandle fd);
        if (errno != 0)
        {
            fd.Dispose();
            throw new CbtUtilException(errno, $"Failed to open log file {name}. {Errno.Describe(errno)}\n");
        }

        return new LogFile(name, fd);
    }
}
