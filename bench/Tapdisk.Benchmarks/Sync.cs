using System.Runtime.CompilerServices;

namespace Tapdisk.Benchmarks;

/// <summary>Waits for driver ValueTasks; the drivers complete synchronously, so the fast path is one flag check.</summary>
internal static class Sync
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Complete(ValueTask task)
    {
        if (task.IsCompletedSuccessfully)
        {
            return;
        }

        task.AsTask().GetAwaiter().GetResult();
    }
}
