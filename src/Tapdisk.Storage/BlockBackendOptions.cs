using Microsoft.Extensions.Logging;

namespace Tapdisk.Storage;

/// <summary>Settings of one VBD's backend; the defaults suit a tapdisk VBD.</summary>
public sealed class BlockBackendOptions
{
    /// <summary>How the VBD is named in logs ("minor 3").</summary>
    public string Name { get; init; } = "vbd";

    public ILogger? Logger { get; init; }

    /// <summary>The threads requests run on; shared by every VBD of the process by default.</summary>
    public IoWorkerPool IoWorkers { get; init; } = IoWorkerPool.Shared;

    /// <summary>
    /// The most I/O workers this VBD's requests may hold at once (its share); the rest of its requests wait in its own
    /// queue, so storage that hangs holds this many workers and no more, and every VBD reserves its share in the pool's
    /// bound. Default: the shared pool's base bound (16 on two cores), so one busy VBD runs as fast as the whole pool
    /// did before shares existed (half of it cost nbdcopy 12% in bench/RESULTS.md, "Block stack").
    /// </summary>
    public int WorkerShare { get; init; } = DefaultWorkerShare;

    public static int DefaultWorkerShare { get; } = IoWorkerPool.DefaultMaxThreads;

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Name);
        ArgumentNullException.ThrowIfNull(IoWorkers);
        ArgumentOutOfRangeException.ThrowIfLessThan(WorkerShare, 1);
    }
}
