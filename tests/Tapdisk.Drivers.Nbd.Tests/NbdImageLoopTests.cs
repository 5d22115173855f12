using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// On a frontend's I/O loop the client takes requests inline and their replies come back to that loop: what follows a
/// request (a mirror's join, the frontend's reply) runs on the thread that started it, with no thread pool hop.
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
            Assert.Equal(loop is null, image.MayBlock(BlockOperation.Write, 0, Block));
            Assert.Equal(loop is null, image.MayBlock(BlockOperation.Read, 0, Block));
            if (loop is null)
            {
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
}
