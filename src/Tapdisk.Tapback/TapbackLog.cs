using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Tapdisk.Tapback;

/// <summary>
/// tapback's log: stderr (until daemonised) and syslog (/dev/log, ident tapback, facility daemon), the same sinks
/// as tapdisk's. Faults caused by a frontend are rate-limited per device so one guest cannot flood dom0's log.
/// </summary>
internal sealed class TapbackLog : IDisposable
{
    private const int FacilityDaemon = 3 << 3;
    private const int MaxPerWindow = 10;
    private static readonly TimeSpan s_window = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (DateTime WindowStart, int Count, int Dropped)> _limits = [];
    private readonly TextWriter? _stderr;
    private Socket? _syslog;
    private bool _stderrEnabled = true;

    public TapbackLog(bool syslog = true, TextWriter? stderr = null)
    {
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

    /// <summary>A fault that may repeat for one key (a device): at most 10 lines per 10 s, then a count of the rest.</summary>
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

            if (state.Count >= MaxPerWindow)
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
        if (_stderrEnabled && _stderr is not null)
        {
            try
            {
                _stderr.WriteLine($"tapback[{Environment.ProcessId}]: {message}");
            }
            catch (IOException)
            {
                _stderrEnabled = false;
            }
        }

        Socket? syslog = _syslog;
        if (syslog is not null)
        {
            string line = string.Create(CultureInfo.InvariantCulture, $"<{FacilityDaemon | severity}>tapback[{Environment.ProcessId}]: {message}");
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
