using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Tapdisk.Nbd;

/// <summary>A transport-agnostic NBD server (fixed newstyle) over one or more exports.</summary>
public sealed class NbdServer
{
    private readonly NbdExport[] _exports;
    private long _nextConnectionId;

    public NbdServer(IReadOnlyList<NbdExport> exports, NbdServerOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(exports);
        ArgumentOutOfRangeException.ThrowIfZero(exports.Count);
        _exports = [.. exports];
        Options = options ?? new NbdServerOptions();
        Options.Validate();
        Logger = logger ?? NullLogger.Instance;
        HandshakeTimeouts = new HandshakeTimeoutLog(Logger, Options.HandshakeTimeout, TimeProvider.System);
    }

    public NbdServer(NbdExport export, NbdServerOptions? options = null, ILogger? logger = null)
        : this([export], options, logger)
    {
    }

    public IReadOnlyList<NbdExport> Exports => _exports;

    public NbdServerOptions Options { get; }

    /// <summary>
    /// This server's published I/O counters (tapdisk's /dev/shm/td3-&lt;pid&gt;/nbd-&lt;minor&gt; or nbd-old-&lt;minor&gt;), counted
    /// per read and write its clients send; null when not published.
    /// </summary>
    public Tapdisk.Abi.TdStatsPage? StatsPage
    {
        get => Volatile.Read(ref _statsPage);
        set => Volatile.Write(ref _statsPage, value);
    }

    private Tapdisk.Abi.TdStatsPage? _statsPage;

    internal ILogger Logger { get; }

    /// <summary>Where connections and fd receivers report clients dropped for a handshake past its deadline.</summary>
    internal HandshakeTimeoutLog HandshakeTimeouts { get; }

    /// <summary>
    /// Runs one client from handshake to close. Never throws for client or transport faults; completes both pipe ends.
    /// Cancelling stops reading requests and drops the client (requests already at the image still finish).
    /// </summary>
    public Task HandleConnectionAsync(IDuplexPipe transport, CancellationToken cancellationToken = default) =>
        HandleConnectionAsync(transport, NbdHandshakeStyle.FixedNewstyle, cancellationToken);

    /// <summary>As <see cref="HandleConnectionAsync(IDuplexPipe, CancellationToken)"/>, with the given handshake.</summary>
    public Task HandleConnectionAsync(IDuplexPipe transport, NbdHandshakeStyle style, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        return RunConnectionAsync(transport, style, cancellationToken);
    }

    private async Task RunConnectionAsync(IDuplexPipe transport, NbdHandshakeStyle style, CancellationToken cancellationToken)
    {
        using var connection = new NbdConnection(this, transport, Interlocked.Increment(ref _nextConnectionId), style);
        await connection.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Finds the export a client named. Like tapdisk, a single-export server accepts any name;
    /// otherwise the name must match, and "" means the first (default) export.
    /// </summary>
    internal NbdExport? Resolve(string name)
    {
        foreach (NbdExport export in _exports)
        {
            if (string.Equals(export.Name, name, StringComparison.Ordinal))
            {
                return export;
            }
        }

        return _exports.Length == 1 || name.Length == 0 ? _exports[0] : null;
    }
}
