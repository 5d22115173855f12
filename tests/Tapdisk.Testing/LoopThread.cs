using System.Runtime.ExceptionServices;
using Tapdisk.Storage;

namespace Tapdisk.Testing;

/// <summary>Runs test code on a thread of its own that owns an I/O loop, as a frontend's thread does.</summary>
public static class LoopThread
{
    /// <summary>
    /// Runs <paramref name="body"/> on a new thread with its loop (null on the fallback engine), disposes the loop
    /// there, and rethrows here whatever the body threw.
    /// </summary>
    public static void Run(Action<IoLoop?> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using IoLoop? loop = IoLoop.TryCreateForCurrentThread();
                body(loop);
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        });
        thread.Start();
        thread.Join();
        failure?.Throw();
    }
}
