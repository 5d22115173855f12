using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// Starts peer servers from one thread that lives as long as the test process. A child gets its parent-death signal
/// when the *thread* that forked it exits (prctl(2) PR_SET_PDEATHSIG), and a test's thread often ends at its first
/// await: a server started from it was then sent SIGTERM mid-test (seen with nbdkit, which shuts down and answers
/// ESHUTDOWN to requests in flight).
/// </summary>
internal static class PeerLauncher
{
    private static readonly BlockingCollection<Action> s_queue = StartThread();

    public static Process Start(ProcessStartInfo psi)
    {
        Process? process = null;
        Exception? error = null;
        using var done = new ManualResetEventSlim();
        s_queue.Add(() =>
        {
            try
            {
                process = Process.Start(psi);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                error = e;
            }

            done.Set();
        });
        Assert.True(done.Wait(TimeSpan.FromMinutes(1)), "the peer launcher thread did not start " + psi.FileName);
        return process ?? throw new InvalidOperationException("cannot start " + psi.FileName, error);
    }

    private static BlockingCollection<Action> StartThread()
    {
        var queue = new BlockingCollection<Action>();
        var thread = new Thread(() =>
        {
            foreach (Action launch in queue.GetConsumingEnumerable())
            {
                launch();
            }
        })
        {
            IsBackground = true,
            Name = "peer-launcher",
        };
        thread.Start();
        return queue;
    }
}
