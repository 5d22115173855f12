using System.Diagnostics;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Raw.Tests;

/// <summary>
/// The I/O loop's adaptive poll: grows while waits are short, halves after long ones, off at 0; at most half the host's
/// CPUs poll at once, across processes.
/// </summary>
public sealed class PollBudgetTests
{
    private const long Max = 800;

    [Fact]
    public void Update_ShortWaits_GrowFromAnEighthByDoublingToTheMaximum()
    {
        var budget = new PollBudget(Max);
        Assert.Equal(0, budget.Ticks);
        Assert.False(budget.TryEnter(), "no poll before a short wait was seen");

        long[] expected = [100, 200, 400, 800];
        foreach (long ticks in expected)
        {
            // Longer than the budget, within the maximum: the poll would have caught it had it been longer.
            budget.Update(budget.Ticks + 1);
            Assert.Equal(ticks, budget.Ticks);
        }

        budget.Update(Max);
        Assert.Equal(Max, budget.Ticks);
    }

    [Fact]
    public void Update_AWaitThePollCaught_KeepsTheBudget_ALongWaitHalvesIt()
    {
        var budget = new PollBudget(Max);
        budget.Update(1);
        budget.Update(101);
        Assert.Equal(200, budget.Ticks);

        budget.Update(150);
        Assert.Equal(200, budget.Ticks);

        budget.Update(Max + 1);
        Assert.Equal(100, budget.Ticks);
        for (int i = 0; i < 7; i++)
        {
            budget.Update(10 * Max);
        }

        Assert.Equal(0, budget.Ticks);
        Assert.False(budget.TryEnter(), "an idle loop stops polling");
    }

    [Fact]
    public void Update_MaximumZero_NeverPolls()
    {
        var budget = new PollBudget(0);
        budget.Update(1);
        budget.Update(5);
        Assert.Equal(0, budget.Ticks);
        Assert.False(budget.TryEnter());
    }

    [Fact]
    public void Host_HalfTheProcessors_SharedThroughDevShm()
    {
        Assert.Equal(Environment.ProcessorCount / 2, PollSlots.Host.Count);

        // A single CPU never polls, so it maps nothing.
        Assert.True(PollSlots.Host.IsShared == (PollSlots.Host.Count > 0), $"{PollSlots.HostPath} could not be mapped");
    }

    [Fact]
    public void TryEnter_TwoTablesOnOnePage_NeverMoreLoopsThanSlots_AndAGivenSlotIsFreeAgain()
    {
        using var dir = new TempDirectory();
        string page = dir.File("slots");

        // Two tables on one page: what two tapdisk processes see.
        using PollSlots one = PollSlots.Open(page, 2);
        using PollSlots other = PollSlots.Open(page, 2);
        Assert.True(one.IsShared && other.IsShared);
        PollBudget a = Polling(one), b = Polling(other), c = Polling(other);
        Assert.True(a.TryEnter());
        Assert.True(b.TryEnter());
        Assert.False(c.TryEnter(), "a third loop polled with two slots");

        a.Exit();
        Assert.True(c.TryEnter(), "the slot given back on the other table was not free");
        b.Exit();
        c.Exit();
        Assert.Equal(new byte[128], File.ReadAllBytes(page).AsSpan(0, 128).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TryEnter_ASlotHeldByAProcessThatIsGone_IsTakenBack(bool pidReused)
    {
        using var dir = new TempDirectory();
        string page = dir.File("slots");
        int pid;
        if (pidReused)
        {
            // pid 1 lives, but not the process that started at this tick: the kernel gave its pid to another.
            pid = 1;
        }
        else
        {
            using Process gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
            gone.WaitForExit();
            pid = gone.Id;
        }

        // A tapdisk killed mid-poll left its word (pid, start time) in the only slot.
        Hold(page, (uint)pid | ((ulong)uint.MaxValue << 32));
        using PollSlots slots = PollSlots.Open(page, 1);
        PollBudget budget = Polling(slots);
        int attempts = 0;
        while (!budget.TryEnter())
        {
            // Stale slots are looked for now and then (a read of /proc each), not at every try: a bounded number of tries.
            Assert.True(++attempts < 1000, "the gone process's slot was never taken back");
        }

        Assert.True(attempts > 0, "the slot was free to begin with: the case is not exercised");
        Assert.Equal((uint)Environment.ProcessId, (uint)BitConverter.ToUInt64(File.ReadAllBytes(page), 0));
        budget.Exit();
    }

    [Fact]
    public void TryEnter_ALiveProcessesSlot_IsNotTakenBack()
    {
        using var dir = new TempDirectory();
        string page = dir.File("slots");
        using Process sleeper = Process.Start(new ProcessStartInfo("sleep", "600") { UseShellExecute = false })!;
        try
        {
            long started = ProcessControl.StartTime(sleeper.Id);
            Assert.True(started > 0);
            Hold(page, (uint)sleeper.Id | ((ulong)(uint)started << 32));
            using PollSlots slots = PollSlots.Open(page, 1);
            PollBudget budget = Polling(slots);
            for (int i = 0; i < 1000; i++)
            {
                Assert.False(budget.TryEnter(), "a living process's slot was taken");
            }
        }
        finally
        {
            sleeper.Kill();
            sleeper.WaitForExit();
        }
    }

    [Fact]
    public void Open_APageOthersMayWrite_IsNotShared()
    {
        using var dir = new TempDirectory();
        string page = dir.File("slots");
        File.WriteAllBytes(page, new byte[4096]);
        File.SetUnixFileMode(page, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite);
        using (PollSlots open = PollSlots.Open(page, 2))
        {
            Assert.False(open.IsShared);
        }

        string link = dir.File("link");
        File.SetUnixFileMode(page, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.CreateSymbolicLink(link, page);
        using (PollSlots followed = PollSlots.Open(link, 2))
        {
            Assert.False(followed.IsShared);
        }

        using PollSlots own = PollSlots.Open(page, 2);
        Assert.True(own.IsShared);
    }

    [Fact]
    public void TryEnter_ASingleCpuHost_NeverPolls()
    {
        using var dir = new TempDirectory();
        using PollSlots none = PollSlots.Open(dir.File("slots"), 0);
        Assert.False(Polling(none).TryEnter());
    }

    /// <summary>Makes <paramref name="page"/> a one-slot table whose slot holds <paramref name="word"/>.</summary>
    private static void Hold(string page, ulong word)
    {
        using (PollSlots table = PollSlots.Open(page, 1))
        {
            Assert.True(table.IsShared);
        }

        using var file = new FileStream(page, FileMode.Open, FileAccess.Write);
        file.Write(BitConverter.GetBytes(word));
    }

    /// <summary>A budget that has seen a short wait, so it polls if it gets a slot.</summary>
    private static PollBudget Polling(PollSlots slots)
    {
        var budget = new PollBudget(Max, slots);
        budget.Update(1);
        return budget;
    }

    [Theory]
    [InlineData(null, PollBudget.DefaultMaxMicroseconds)]
    [InlineData("", PollBudget.DefaultMaxMicroseconds)]
    [InlineData("0", 0)]
    [InlineData("120", 120)]
    public void Parse_Microseconds_AreStopwatchTicks(string? setting, long microseconds)
    {
        Assert.Equal(microseconds * Stopwatch.Frequency / 1_000_000, PollBudget.Parse(setting));
    }

    [Theory]
    [InlineData(" ")]
    [InlineData("-1")]
    [InlineData("50us")]
    [InlineData("2000000")]
    public void Parse_NotMicroseconds_IsRefusedNamingTheVariable(string setting)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => PollBudget.Parse(setting));
        Assert.Contains(PollBudget.Variable, e.Message, StringComparison.Ordinal);
    }
}
