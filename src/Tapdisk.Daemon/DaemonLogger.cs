using Microsoft.Extensions.Logging;
using Tapdisk.Logging;

namespace Tapdisk.Daemon;

/// <summary>Routes library ILogger output (the blkif ring) into the daemon's stderr + syslog log.</summary>
internal sealed class DaemonLogger : ILogger
{
    private readonly ProcessLog _log;

    public DaemonLogger(ProcessLog log)
    {
        _log = log;
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information || (logLevel == LogLevel.Debug && _log.Verbose);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        string message = formatter(state, exception);
        if (exception is not null)
        {
            message += ": " + exception;
        }

        switch (logLevel)
        {
            case LogLevel.Critical or LogLevel.Error:
                _log.Error(message);
                break;
            case LogLevel.Warning:
                _log.Warning(message);
                break;
            case LogLevel.Debug:
                _log.Debug(message);
                break;
            default:
                _log.Info(message);
                break;
        }
    }
}
