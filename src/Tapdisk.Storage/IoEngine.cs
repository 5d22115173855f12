using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>How file I/O reaches the kernel in this process.</summary>
public enum IoEngineKind
{
    /// <summary>Blocking pread/pwrite on I/O workers (the fallback).</summary>
    Threads,

    /// <summary>io_uring: the frontend's thread submits and reaps (<see cref="IoLoop"/>).</summary>
    IoUring,
}

/// <summary>
/// The engine, chosen once per process: io_uring when the kernel grants it and passes a self-test (a read through a
/// ring), else the worker threads; <c>TAPDISK_IO_ENGINE=threads</c> forces the fallback, <c>io_uring</c> requires
/// the ring (start-up fails with the reason instead of falling back). The daemon logs the choice.
/// </summary>
public static class IoEngine
{
    /// <summary>The variable that forces a choice.</summary>
    public const string Variable = "TAPDISK_IO_ENGINE";

    private static readonly Lazy<(IoEngineKind Kind, string Reason)> s_choice = new(Choose);
    private static readonly Lazy<long> s_pollMaxTicks = new(() => PollBudget.Parse(Environment.GetEnvironmentVariable(PollBudget.Variable)));

    public static IoEngineKind Kind => s_choice.Value.Kind;

    /// <summary>Why this engine: the forcing variable, or the errno that ruled io_uring out.</summary>
    public static string Reason => s_choice.Value.Reason;

    /// <summary>The longest an I/O loop polls before it sleeps, in Stopwatch ticks (<see cref="PollBudget"/>).</summary>
    public static long PollMaxTicks => s_pollMaxTicks.Value;

    /// <summary>The line a process logs at start-up: "io_uring (available)", "threads (TAPDISK_IO_ENGINE=threads)".</summary>
    public static string Describe() => $"{(Kind == IoEngineKind.IoUring ? "io_uring" : "threads")} ({Reason})";

    private static (IoEngineKind, string) Choose()
    {
        // A misspelt poll setting refuses to start, as a misspelt engine does.
        _ = PollMaxTicks;
        string? forced = Environment.GetEnvironmentVariable(Variable);
        if (string.Equals(forced, "threads", StringComparison.Ordinal))
        {
            return (IoEngineKind.Threads, $"{Variable}=threads");
        }

        if (!string.IsNullOrEmpty(forced) && !string.Equals(forced, "io_uring", StringComparison.Ordinal))
        {
            throw new ArgumentException($"{Variable} must be io_uring or threads, not '{forced}'");
        }

        int errno = SelfTest();
        if (errno == 0)
        {
            return (IoEngineKind.IoUring, string.IsNullOrEmpty(forced) ? "available" : $"{Variable}={forced}");
        }

        string why = $"io_uring unavailable: {Errno.Describe(errno)} (errno {errno})";
        if (string.Equals(forced, "io_uring", StringComparison.Ordinal))
        {
            throw new ErrnoIOException(errno, null, $"{Variable}=io_uring, but {why}");
        }

        return (IoEngineKind.Threads, why);
    }

    /// <summary>Sets up a ring and reads a signalled eventfd through it: proves setup, mapping, READ and reaping.</summary>
    private static int SelfTest()
    {
        int errno = IoUring.TryCreate(4, out IoUring? ring);
        if (errno != 0)
        {
            return errno;
        }

        using (ring)
        using (var wake = new EventFd())
        {
            wake.Signal();
            byte[] value = new byte[sizeof(ulong)];
            using System.Buffers.MemoryHandle pinned = value.AsMemory().Pin();
            if (!ring!.TryPrepare(IoUringOp.Read, wake.Handle.Fd, IoUring.AddressOf(pinned), sizeof(ulong), ulong.MaxValue, 0, 1))
            {
                return Errno.EIO;
            }

            errno = ring.Enter(1);
            if (errno != 0)
            {
                return errno;
            }

            return ring.TryReap(out ulong token, out int result) && token == 1 && result == sizeof(ulong) ? 0 : result < 0 ? -result : Errno.EIO;
        }
    }
}
