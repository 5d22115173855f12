using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Tapdisk.Logging;

/// <summary>
/// The log of a long-running executable (tapdisk, tapback): one line per event to stderr (until daemonised) and to
/// syslog (/dev/log, facility daemon), with blktap-style rate limiting per key so one failing disk or one hostile
/// frontend cannot flood dom0's log.
/// </summary>
public sealed class ProcessLog : IDisposable
{
    private const int FacilityDaemon = 3 << 3;
    private static readonly TimeSpan s_window = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (DateTime WindowStart, int Count, int Dropped)> _limits = [];
    private readonly string _ident;
    private readonly int _maxPerWindow;
    private readonly TextWriter _stderr;
    private Socket? _syslog;
    private bool _stderrEnabled = true;

    /// <param name="ident">The program name that prefixes each line, as syslog(3)'s ident.</param>
    /// <param name="maxPerWindow">How many lines <see cref="RateLimited"/> lets through per key per 10 s.</param>
    /// <param name="syslog">False to write to stderr only (tests).</param>
    /// <param name="stderr">Where stderr lines go; the process's stderr when null.</param>
    public ProcessLog(string ident, int maxPerWindow, bool syslog = true, TextWriter? stderr = null)
    {
        _ident = ident;
        _maxPerWindow = maxPerWindow;
        _stderr = stderr ?? Console.Error;
        if (!syslog)
        {
            return;
        }

        try
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint("/dev/log"));
            _syslog = socket;
        }
        catch (SocketException)
        {
            // No syslog daemon (containers, CI): stderr only.
            _syslog = null;
        }
    }

    public bool Verbose { get; set; }

    /// <summary>The process's own log file beside syslog (tapdisk.&lt;pid&gt;.log); null when there is none.</summary>
    public LogFile? File
    {
        get => Volatile.Read(ref _file);
        set => Volatile.Write(ref _file, value);
    }

    private LogFile? _file;

    /// <summary>After daemonising, stderr is /dev/null: stop formatting for it.</summary>
    public void DetachStderr() => _stderrEnabled = false;

    public void Info(string message) => Write(6, message);

    public void Warning(string message) => Write(4, message);

    public void Error(string message) => Write(3, message);

    public void Debug(string message)
    {
        if (Verbose)
        {
            Write(7, message);
        }
    }

    /// <summary>A fault that may repeat for one key (a disk, a device), at syslog severity 3 (error) or 4 (warning): at most maxPerWindow lines per 10 s, then a count of the rest.</summary>
    public void RateLimited(int severity, string key, string message)
    {
        string? summary = null;
        lock (_lock)
        {
            DateTime now = DateTime.UtcNow;
            _limits.TryGetValue(key, out var state);
            if (now - state.WindowStart > s_window)
            {
                if (state.Dropped > 0)
                {
                    summary = $"{key}: {state.Dropped} similar messages suppressed";
                }

                state = (now, 0, 0);
            }

            if (state.Count >= _maxPerWindow)
            {
                _limits[key] = state with { Dropped = state.Dropped + 1 };
                return;
            }

            _limits[key] = state with { Count = state.Count + 1 };
        }

        if (summary is not null)
        {
            Write(severity, summary);
        }

        Write(severity, message);
    }

    private void Write(int severity, string message)
    {
        Volatile.Read(ref _file)?.Write(severity, message);
        if (_stderrEnabled)
        {
            try
            {
                _stderr.WriteLine($"{_ident}[{Environment.ProcessId}]: {message}");
            }
            catch (IOException)
            {
                _stderrEnabled = false;
            }
        }

        Socket? syslog = _syslog;
        if (syslog is not null)
        {
            string line = string.Create(CultureInfo.InvariantCulture, $"<{FacilityDaemon | severity}>{_ident}[{Environment.ProcessId}]: {message}");
            try
            {
                syslog.Send(Encoding.UTF8.GetBytes(line));
            }
            catch (SocketException)
            {
                _syslog = null;
                syslog.Dispose();
            }
        }
    }

    public void Dispose()
    {
        // An exit that did not close the file cleanly (a start-up failure) keeps it, flushed, for whoever investigates.
        Interlocked.Exchange(ref _file, null)?.Close(cleanExit: false);
        _syslog?.Dispose();
    }
}
