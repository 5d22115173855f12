using System.Diagnostics;
using Tapdisk.Storage;
using Xunit;

namespace Tapdisk.Drivers.Raw.Tests;

/// <summary>The I/O loop's adaptive poll: grows while waits are short, halves after long ones, off at 0.</summary>
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
    public void TryEnter_AtMostHalfTheProcessorsPollAtOnce_AndASlotComesBack()
    {
        var budget = new PollBudget(Max);
        budget.Update(1);
        int cap = Environment.ProcessorCount / 2;
        if (cap == 0)
        {
            Assert.False(budget.TryEnter(), "a single CPU never polls");
            return;
        }

        // Other tests' loops hold a slot for a poll's few microseconds at most: a slot comes free soon, and more
        // than the cap is never had.
        Assert.True(EnterWithin(budget, TimeSpan.FromSeconds(10)), "no polling slot came free");
        int entered = 1;
        for (int i = 0; i < cap + 4; i++)
        {
            if (budget.TryEnter())
            {
                entered++;
            }
        }

        try
        {
            Assert.InRange(entered, 1, cap);
        }
        finally
        {
            for (int i = 0; i < entered; i++)
            {
                PollBudget.Exit();
            }
        }

        Assert.True(EnterWithin(budget, TimeSpan.FromSeconds(10)), "the slots given back were not free again");
        PollBudget.Exit();
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

    private static bool EnterWithin(PollBudget budget, TimeSpan limit)
    {
        long until = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
        while (!budget.TryEnter())
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                return false;
            }

            Thread.Yield();
        }

        return true;
    }
}
