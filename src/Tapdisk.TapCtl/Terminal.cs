using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Tapdisk.TapCtl;

/// <summary>Unbuffered stdout/stderr writes (raw bytes for the stats payload), and the isatty(1) test.</summary>
internal static class Terminal
{
    // Raw fds rather than System.Console: on a terminal, Console's initialisation writes keypad escape sequences
    // ("\e[?1h\e=") that the C tool never prints.
    private static readonly Lazy<Stream> s_stdout = new(() => OpenFd(1, FileAccess.Write));
    private static readonly Lazy<Stream> s_stderr = new(() => OpenFd(2, FileAccess.Write));

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
}
