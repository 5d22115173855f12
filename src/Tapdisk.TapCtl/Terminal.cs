using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Tapdisk.TapCtl;

/// <summary>Unbuffered stdout/stderr writes (raw bytes for the stats payload), and the isatty(1) test.</summary>
internal static class Terminal
{
    // write(2) on fds 1 and 2 rather than System.Console: on a terminal, Console's initialisation writes keypad escape
    // sequences ("\e[?1h\e=") that the C tool never prints. Not a FileStream either: on a redirected regular file it
    // writes at its own offset 0 (pwrite), clobbering what earlier commands appended to the same file.
    private static readonly Lazy<Stream> s_stdout = new(() => new FdWriteStream(1));
    private static readonly Lazy<Stream> s_stderr = new(() => new FdWriteStream(2));

    /// <summary>True if stdout is a terminal: list and spawn print their human formats then.</summary>
    public static bool StdoutIsTty => !Console.IsOutputRedirected;

    public static void Out(string text) => Write(s_stdout.Value, text);

    public static void OutBytes(ReadOnlySpan<byte> bytes) => s_stdout.Value.Write(bytes);

    public static void Error(string text) => Write(s_stderr.Value, text);

    /// <summary>stdin as an unbuffered stream: one Read is one read(2).</summary>
    public static Stream OpenStdin() => OpenFd(0, FileAccess.Read);

    public static void Flush()
    {
        if (s_stdout.IsValueCreated)
        {
            s_stdout.Value.Flush();
        }
    }

    private static void Write(Stream stream, string text)
    {
        try
        {
            stream.Write(Encoding.UTF8.GetBytes(text));
        }
        catch (IOException)
        {
            // A closed pipe on the other side (tap-ctl list | head): the C tool would die of SIGPIPE; we just stop writing.
        }
    }

    private static Stream OpenFd(int fd, FileAccess access)
    {
        try
        {
            return new FileStream(new SafeFileHandle(fd, ownsHandle: false), access, bufferSize: 0);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            // A closed standard descriptor: behave as if it were /dev/null.
            return Stream.Null;
        }
    }

    /// <summary>An unbuffered write-only stream over an inherited descriptor, writing at its current offset.</summary>
    private sealed class FdWriteStream(int fd) : Stream
    {
        private readonly Tapdisk.Abi.SafeFdHandle _fd = Tapdisk.Abi.PosixFile.Borrow(fd);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => Tapdisk.Abi.PosixFile.WriteAll(_fd, buffer);
    }
}
