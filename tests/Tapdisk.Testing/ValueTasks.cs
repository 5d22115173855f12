namespace Tapdisk.Testing;

public static class ValueTasks
{
    /// <summary>A ValueTask as a ValueTask&lt;bool&gt;, for helpers that wait on a result (IoLoop.Run).</summary>
    public static async ValueTask<bool> AsResult(this ValueTask task)
    {
        await task.ConfigureAwait(false);
        return true;
    }
}
