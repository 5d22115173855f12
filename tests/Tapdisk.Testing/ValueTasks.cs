using Xunit;

namespace Tapdisk.Testing;

public static class ValueTasks
{
    /// <summary>A ValueTask as a ValueTask&lt;bool&gt;, for helpers that wait on a result (IoLoop.Run).</summary>
    public static async ValueTask<bool> AsResult(this ValueTask task)
    {
        await task.ConfigureAwait(false);
        return true;
    }

    /// <summary>Asserts that <paramref name="task"/> completed inline, and rethrows what it failed with.</summary>
    public static void AssertCompletedInline(this ValueTask task)
    {
        Assert.True(task.IsCompleted, "the operation went asynchronous");
        task.GetAwaiter().GetResult();
    }
}
