using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Tapdisk.Daemon;

/// <summary>
/// tapdisk's log: one line per fault to stderr and to syslog (/dev/log, ident tapdisk, facility daemon), with
/// blktap-style rate limiting per key so a failing disk cannot flood the log.
/// </summary>
internal sealed class DaemonLog : IDisposable
{
    private const int FacilityDaemon = 3 << 3;
    private const int MaxPerWindow = 20;
    private static readonly TimeSpan s_window = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (DateTime WindowStart, int Count, int Dropped)> _limits = [];
    private readonly string _ident;
    private Socket? _syslog;
    private bool _stderr = true;

    public DaemonLog(string ident)
    {
        _ident = ident;
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

    /// <summary>After daemonising, stderr is /dev/null: stop formatting for it.</summary>
    public void DetachStderr() => _stderr = false;

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

    /// <summary>An error that may repeat (a failing disk): at most 20 lines per key per 10 s, then a count of what was dropped.</summary>
    public void RateLimitedError(string key, string message)
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
                    summary = $"{key}: {state.Dropped} similar errors suppressed";
                }

                state = (now, 0, 0);
            }

            if (state.Count >= MaxPerWindow)
            {
                _limits[key] = state with { Dropped = state.Dropped + 1 };
                return;
            }

            _limits[key] = state with { Count = state.Count + 1 };
        }

        if (summary is not null)
        {
            Write(3, summary);
        }

        Write(3, message);
    }

    private void Write(int severity, string message)
    {
        if (_stderr)
        {
            try
            {
                Console.Error.WriteLine($"tapdisk[{Environment.ProcessId}]: {message}");
            }
            catch (IOException)
            {
                _stderr = false;
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

    public void Dispose() => _syslog?.Dispose();
}
