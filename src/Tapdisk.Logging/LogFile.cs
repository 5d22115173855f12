using System.Globalization;
using System.Text;

namespace Tapdisk.Logging;

/// <summary>
/// tapdisk's own log file, /var/log/blktap/tapdisk.&lt;pid&gt;.log (control-xen.md 1, 4.3): written through a 16 KiB
/// buffer (flushed at once for errors), reopened on SIGHUP for logrotate, and deleted at a clean exit unless it is
/// precious: an error was logged or SIGUSR1 asked to keep it.
/// </summary>
public sealed class LogFile : IDisposable
{
    public const int BufferBytes = 16 * 1024;

    private readonly Lock _lock = new();
    private StreamWriter? _writer;
    private bool _precious;

    private LogFile(string path)
    {
        Path = path;
        _writer = OpenWriter(path);
    }

    public string Path { get; }

    /// <summary>True once an error was logged or <see cref="MarkPrecious"/> was called: the file is kept at exit.</summary>
    public bool IsPrecious
    {
        get
        {
            lock (_lock)
            {
                return _precious;
            }
        }
    }

    /// <summary>Creates the directory (mode 0755) if needed and opens (appends to) <c>tapdisk.&lt;pid&gt;.log</c> in it.</summary>
    public static LogFile Open(string directory, string ident, int pid)
    {
        if (!Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory);
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                    | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            }
        }

        return new LogFile(System.IO.Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"{ident}.{pid}.log")));
    }

    /// <summary>Appends one line; severities 0..3 (syslog's emergency..error) mark the file precious and flush it.</summary>
    public void Write(int severity, string message)
    {
        lock (_lock)
        {
            if (_writer is null)
            {
                return;
            }

            try
            {
                _writer.Write(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture));
                _writer.Write(' ');
                _writer.Write(SeverityName(severity));
                _writer.Write(": ");
                _writer.Write(message);
                _writer.Write('\n');
                if (severity <= 3)
                {
                    _precious = true;
                    _writer.Flush();
                }
            }
            catch (IOException)
            {
                // Disk full or the file system gone: syslog still has the line; stop writing here.
                CloseWriter();
            }
        }
    }

    /// <summary>SIGUSR1: keep the file at exit.</summary>
    public void MarkPrecious()
    {
        lock (_lock)
        {
            _precious = true;
            _writer?.Flush();
        }
    }

    /// <summary>SIGHUP: flush, close and open the path again (logrotate moved the old file away).</summary>
    public void Reopen()
    {
        lock (_lock)
        {
            CloseWriter();
            _writer = OpenWriter(Path);
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            _writer?.Flush();
        }
    }

    /// <summary>Flushes and closes; at a clean exit the file is deleted unless precious.</summary>
    public void Close(bool cleanExit)
    {
        lock (_lock)
        {
            CloseWriter();
            if (cleanExit && !_precious)
            {
                File.Delete(Path);
            }
        }
    }

    public void Dispose() => Close(cleanExit: false);

    private static StreamWriter OpenWriter(string path)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        return new StreamWriter(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), BufferBytes) { AutoFlush = false };
    }

    private void CloseWriter()
    {
        try
        {
            _writer?.Dispose();
        }
        catch (IOException)
        {
            // Teardown of a file that already failed: the lines went to syslog too.
        }

        _writer = null;
    }

    private static string SeverityName(int severity) => severity switch
    {
        <= 3 => "ERROR",
        4 => "WARN",
        6 => "INFO",
        _ => "DEBUG",
    };
}
