using System.Diagnostics;
using System.Globalization;

namespace Tapdisk.Storage;

/// <summary>
/// How long an I/O loop polls for its next completion before it sleeps (adaptive, as qemu's iothreads do with
/// poll-max-ns). A sleeping thread costs a wake-up when the disk or the client answers; in a VM that is a halt and a
/// VM exit, and at queue depth 1 it was a third of each request's round trip (bench/RESULTS.md). The budget grows while
/// waits end within the maximum and halves after a wait that outlasts it, so an idle connection stops polling.
/// </summary>
public struct PollBudget
{
    /// <summary>The variable that sets the maximum poll in microseconds ("0" turns polling off).</summary>
    public const string Variable = "TAPDISK_POLL_MAX_US";

    /// <summary>The default maximum: a local disk's 4 KiB read and a client's next request on one host both fit.</summary>
    public const int DefaultMaxMicroseconds = 50;

    // Polling loops at once in the process: at most half the CPUs, so polling never takes the CPU its client, the
    // disk's completion or another VBD's loop needs (none on a single CPU).
    private static readonly int s_maxPollers = Environment.ProcessorCount / 2;
    private static int s_pollers;

    private readonly long _maxTicks;
    private long _ticks;

    public PollBudget(long maxTicks)
    {
        _maxTicks = maxTicks;
    }

    /// <summary>The process's budget (from <see cref="Variable"/>, read once with the engine's choice).</summary>
    public static PollBudget FromEnvironment() => new(IoEngine.PollMaxTicks);

    /// <summary>The ticks to poll before the next sleep.</summary>
    public readonly long Ticks => _ticks;

    /// <summary>The first budget after a short wait: a fraction of the maximum, doubled from there.</summary>
    private readonly long InitialTicks => Math.Max(1, _maxTicks / 8);

    /// <summary>Takes a polling slot; false if polling is off or enough loops poll already.</summary>
    public readonly bool TryEnter()
    {
        if (_ticks == 0)
        {
            return false;
        }

        if (Interlocked.Increment(ref s_pollers) <= s_maxPollers)
        {
            return true;
        }

        Interlocked.Decrement(ref s_pollers);
        return false;
    }

    public static void Exit() => Interlocked.Decrement(ref s_pollers);

    /// <summary>Adjusts the budget after a wait (polled and slept) of <paramref name="waitedTicks"/>.</summary>
    public void Update(long waitedTicks)
    {
        if (_maxTicks == 0 || waitedTicks <= _ticks)
        {
            // Off, or the poll caught it: the budget is right.
            return;
        }

        _ticks = waitedTicks > _maxTicks ? _ticks / 2 : _ticks == 0 ? InitialTicks : Math.Min(_ticks * 2, _maxTicks);
    }

    /// <summary>The maximum in ticks for a setting in microseconds; throws on a value that is not one.</summary>
    public static long Parse(string? microseconds)
    {
        int us = DefaultMaxMicroseconds;
        // Empty is unset, as for the engine's variable (a unit file may export it empty).
        if (!string.IsNullOrEmpty(microseconds) && (!int.TryParse(microseconds, NumberStyles.None, CultureInfo.InvariantCulture, out us) || us > 1_000_000))
        {
            throw new ArgumentException($"{Variable}={microseconds}: expected microseconds from 0 to 1000000");
        }

        return us * Stopwatch.Frequency / 1_000_000;
    }
}
