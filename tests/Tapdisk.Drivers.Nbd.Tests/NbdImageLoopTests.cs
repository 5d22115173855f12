using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// The client never makes its caller wait for the server, so frontends run its requests on their own thread; on an I/O
/// loop the replies come back to that loop: what follows a request (a mirror's join, the frontend's reply) runs on the
/// thread that started it, with no thread pool hop.
/// </summary>
public sealed class NbdImageLoopTests
{
    private const int Requests = 16;
    private const int Block = 4096;

    [Fact]
    public void Requests_SentFromALoop_CompleteOnThatLoopsThread()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        LoopThread.Run(loop =>
        {
            using NbdImage image = NbdImage.Open(server.SocketPath, ImageOpenOptions.ReadWrite, NbdClientOptions.Default with { RequestTimeout = TimeSpan.FromMinutes(1) });
            Assert.False(image.MayBlock(BlockOperation.Write, 0, Block));
            Assert.False(image.MayBlock(BlockOperation.Read, 0, Block));
            if (loop is null)
            {
                Assert.Equal("threads", Environment.GetEnvironmentVariable(IoEngine.Variable));
                return;
            }

            int loopThread = Environment.CurrentManagedThreadId;
            var continuedOn = new int[Requests * 2];
            byte[] written = new byte[Requests * Block];
            Random.Shared.NextBytes(written);
            byte[] read = new byte[written.Length];

            async ValueTask<bool> WriteThenReadAsync(int i)
            {
                await image.WriteAsync(i * Block, written.AsMemory(i * Block, Block));
                continuedOn[2 * i] = Environment.CurrentManagedThreadId;
                await image.ReadAsync(i * Block, read.AsMemory(i * Block, Block));
                continuedOn[(2 * i) + 1] = Environment.CurrentManagedThreadId;
                return true;
            }

#pragma warning disable CA2012 // Each stored ValueTask is run to completion exactly once, right after.
            var pending = new ValueTask<bool>[Requests];
            for (int i = 0; i < Requests; i++)
            {
                pending[i] = WriteThenReadAsync(i);
            }

            foreach (ValueTask<bool> request in pending)
            {
                Assert.True(loop.Run(request));
            }
#pragma warning restore CA2012

            Assert.Equal(written, read);
            Assert.All(continuedOn, thread => Assert.Equal(loopThread, thread));
        });
    }

    [Fact]
    public async Task Writes_ServerNotReadingYet_ReturnAtOnceAndLeaveInOrderWhenItReads()
    {
        using var reading = new ManualResetEventSlim();
        bool released = false;
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();

            // Bounded below the client's request timeout: a send that waited for room would still be waiting when
            // this gives up, and the test would see the server start on its own.
            released = reading.Wait(TimeSpan.FromMinutes(2));
            s.ServeUntilDisconnect();
        });
        NbdImage image = NbdImage.Open(server.SocketPath, ImageOpenOptions.ReadWrite, NbdClientOptions.Default with { RequestTimeout = TimeSpan.FromMinutes(5) });

        // 8 MiB, all at offset 0: far more than the socket holds. Had a send waited for room, this loop would not end
        // before the server reads, and the server reads only after it. The last write must be the one that stays.
        const int Writes = 128;
        var data = new byte[Writes][];
        var writes = new Task[Writes];
        for (int i = 0; i < Writes; i++)
        {
            data[i] = DiskContent.Pattern(server.Disk.Length, i + 1);
            writes[i] = image.WriteAsync(0, data[i]).AsTask();
        }

        reading.Set();
        await Task.WhenAll(writes).WaitAsync(TimeSpan.FromMinutes(5));
        Assert.True(released, "the writes were sent only after the server gave up waiting: a send waited for room");
        Assert.Equal(data[^1], server.Disk);

        // The writer sent the last of them; the close still says goodbye after them.
        image.Dispose();
        server.WaitForScript();
        Assert.True(server.SawDisconnect, "no NBD_CMD_DISC after the writer's sends");
    }
}
