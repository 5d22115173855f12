using System.Diagnostics;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tapdisk.Drivers.Nbd.Tests;

[CollectionDefinition(nameof(NbdClientAllocationTests), DisableParallelization = true)]
public sealed class NbdClientAllocationCollection;

/// <summary>
/// Steady-state READ/WRITE through the client must not allocate per request (STYLE.md section 5), measured
/// process-wide against an out-of-process server (nbdkit), so whatever is allocated is the client's or the test's.
/// </summary>
[Collection(nameof(NbdClientAllocationTests))]
public sealed class NbdClientAllocationTests(ITestOutputHelper output)
{
    private const int RequestBytes = 4096;
    private const int Batch = 32;
    private readonly ITestOutputHelper _output = output;

    [Fact]
    public async Task ReadWrite_SteadyState_AllocatesAlmostNothingPerRequest()
    {
        using var sockets = TempDirectory.ForSockets();
        string socket = sockets.File("nbdkit.sock"), pidFile = sockets.File("nbdkit.pid");
        ProcessStartInfo psi = ExternalTool.StartInfo(ExternalTool.Require("nbdkit"), ["-f", "-U", socket, "-P", pidFile, "memory", "16M"]);
        using Process nbdkit = PeerLauncher.Start(psi);
        try
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(pidFile))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1) && !nbdkit.HasExited, "nbdkit did not start");
                Thread.Sleep(20);
            }

            using NbdImage image = NbdImage.Open(socket, ImageOpenOptions.ReadWrite, NbdClientOptions.Default);
            byte[] buffer = new byte[Batch * RequestBytes];
            var pending = new ValueTask[Batch];

#pragma warning disable CA2012 // Each stored ValueTask is awaited exactly once, in the loop right after.
            async Task RoundAsync()
            {
                for (int i = 0; i < Batch; i++)
                {
                    pending[i] = image.WriteAsync(i * RequestBytes, buffer.AsMemory(i * RequestBytes, RequestBytes));
                }

                for (int i = 0; i < Batch; i++)
                {
                    await pending[i];
                }

                for (int i = 0; i < Batch; i++)
                {
                    pending[i] = image.ReadAsync(i * RequestBytes, buffer.AsMemory(i * RequestBytes, RequestBytes));
                }

                for (int i = 0; i < Batch; i++)
                {
                    await pending[i];
                }
            }
#pragma warning restore CA2012

            // On the thread pool, away from xunit's synchronization context (it would allocate a posted work item per
            // completion) and without its execution context (its AsyncLocals make every continuation run through a
            // context switch), as the daemon's I/O workers run; the rounds' own awaits cost one state machine a round.
            Task<long> measured;
            using (ExecutionContext.SuppressFlow())
            {
                measured = Task.Run(MeasureAsync);
            }

            long perRequest = await measured;
            async Task<long> MeasureAsync()
            {
                for (int i = 0; i < 100; i++)
                {
                    await RoundAsync();
                }

                const int Rounds = 300;
                long before = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < Rounds; i++)
                {
                    await RoundAsync();
                }

                return (GC.GetTotalAllocatedBytes(precise: true) - before) / (Rounds * 2L * Batch);
            }

            _output.WriteLine($"{perRequest} bytes per request");

            // Measured: 3 B, the test's own state machine per round. A request object, a socket operation (.NET's
            // emulated blocking receive allocates one per wait) or a buffer would be >= 64 B.
            Assert.True(perRequest < 32, $"{perRequest} bytes allocated per request in steady state (budget 32)");
        }
        finally
        {
            nbdkit.Kill();
            nbdkit.WaitForExit(TimeSpan.FromMinutes(1));
        }
    }
}
