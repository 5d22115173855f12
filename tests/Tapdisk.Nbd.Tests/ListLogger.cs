using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Tapdisk.Nbd.Tests;

/// <summary>A thread-safe logger that keeps every entry with its structured fields.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly ConcurrentQueue<Entry> _entries = new();

    public IReadOnlyList<Entry> Entries => [.. _entries];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var fields = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
        {
            foreach (KeyValuePair<string, object?> pair in pairs)
            {
                fields[pair.Key] = pair.Value;
            }
        }

        _entries.Enqueue(new Entry(logLevel, eventId.Id, formatter(state, exception), fields));
    }

    public sealed record Entry(LogLevel Level, int EventId, string Message, IReadOnlyDictionary<string, object?> Fields);
}
