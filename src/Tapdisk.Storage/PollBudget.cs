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

    private readonly long _maxTicks;
    private readonly PollSlots? _slots;
    private long _ticks;
    private int _slot = -1;

    /// <param name="maxTicks">The longest poll, in Stopwatch ticks (0: never poll).</param>
    /// <param name="slots">Who else may be polling (default: every loop on the host, <see cref="PollSlots.Host"/>).</param>
    public PollBudget(long maxTicks, PollSlots? slots = null)
    {
        _maxTicks = maxTicks;
        _slots = maxTicks == 0 ? null : slots ?? PollSlots.Host;
    }

    /// <summary>The process's budget (from <see cref="Variable"/>, read once with the engine's choice).</summary>
    public static PollBudget FromEnvironment() => new(IoEngine.PollMaxTicks);

    /// <summary>The ticks to poll before the next sleep.</summary>
    public readonly long Ticks => _ticks;

    /// <summary>The first budget after a short wait: a fraction of the maximum, doubled from there.</summary>
    private readonly long InitialTicks => Math.Max(1, _maxTicks / 8);

    /// <summary>Takes a polling slot; false if polling is off or enough loops on the host poll already.</summary>
    public bool TryEnter() => _ticks != 0 && _slots!.TryTake(ref _slot);

    /// <summary>Gives back the slot <see cref="TryEnter"/> took.</summary>
    public readonly void Exit() => _slots!.Give(_slot);

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
