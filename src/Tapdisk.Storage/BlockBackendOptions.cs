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
    /// queue, so storage that hangs holds this many workers and no more. Default: half the shared pool's base bound
    /// (8 on two cores), which still keeps a queue depth of 32 at full speed there (bench/RESULTS.md).
    /// </summary>
    public int WorkerShare { get; init; } = DefaultWorkerShare;

    public static int DefaultWorkerShare { get; } = Math.Max(4, IoWorkerPool.DefaultMaxThreads / 2);

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Name);
        ArgumentNullException.ThrowIfNull(IoWorkers);
        ArgumentOutOfRangeException.ThrowIfLessThan(WorkerShare, 1);
    }
}
