using System.Text;

namespace Tapdisk.TapCtl;

/// <summary>Unbuffered stdout/stderr writes (raw bytes for the stats payload), and the isatty(1) test.</summary>
internal static class Terminal
{
    private static readonly Lazy<Stream> s_stdout = new(Console.OpenStandardOutput);
    private static readonly Lazy<Stream> s_stderr = new(Console.OpenStandardError);

    /// <summary>True if stdout is a terminal: list and spawn print their human formats then.</summary>
    public static bool StdoutIsTty => !Console.IsOutputRedirected;

    public static void Out(string text) => Write(s_stdout.Value, text);

    public static void OutBytes(ReadOnlySpan<byte> bytes) => s_stdout.Value.Write(bytes);

    public static void Error(string text) => Write(s_stderr.Value, text);

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
}
