using Tapdisk.Testing;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

public sealed class NbdExportTests
{
    private const long Size = 1024 * 1024;

    [Fact]
    public async Task PauseAsync_Idle_CompletesAtOnce()
    {
        var export = new NbdExport("x", "", new MemoryImage(Size));
        await export.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        Assert.True(export.IsPaused);
        export.Resume();
        Assert.False(export.IsPaused);
    }

    [Fact]
    public async Task PauseAsync_RequestInFlight_CompletesOnlyAfterItFinishes()
    {
        var gate = new OperationGate();
        HookedImage image = gate.Image(Size);
        var export = new NbdExport("x", "", image);
        await using var client = new NbdTestClient(new NbdServer(export));
        await client.NegotiateAsync();
        await client.SendRequestAsync(CmdWrite, 1, 0, 512, 0, new byte[512]);
        await gate.Entered.WaitAsync(NbdTestClient.Timeout);

        Task pause = export.PauseAsync();
        Assert.False(pause.IsCompleted);
        gate.Release();
        await pause.WaitAsync(NbdTestClient.Timeout);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        export.Resume();
    }

    [Fact]
    public async Task Resume_WithNewImage_RequestsQueuedDuringPauseGoToNewImage()
    {
        var oldImage = new MemoryImage(Size);
        await oldImage.WriteAsync(0, Enumerable.Repeat((byte)0x11, 512).ToArray());
        var newImage = new MemoryImage(Size);
        await newImage.WriteAsync(0, Enumerable.Repeat((byte)0x22, 512).ToArray());
        var export = new NbdExport("x", "", oldImage);
        await using var client = new NbdTestClient(new NbdServer(export));
        await client.NegotiateAsync();

        await export.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        await client.SendRequestAsync(CmdRead, 1, 0, 512);
        export.Resume(newImage);

        (_, _, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal(1ul, handle);
        Assert.All(payload[8..], b => Assert.Equal(0x22, b));
        Assert.Same(newImage, export.Image);
    }

    [Fact]
    public async Task PauseAsync_Cancelled_ThrowsButStaysPaused()
    {
        var gate = new OperationGate();
        HookedImage image = gate.Image(Size);
        var export = new NbdExport("x", "", image);
        await using var client = new NbdTestClient(new NbdServer(export));
        await client.NegotiateAsync();
        await client.SendRequestAsync(CmdFlush, 1, 0, 0);
        await gate.Entered.WaitAsync(NbdTestClient.Timeout);

        using var cts = new CancellationTokenSource();
        Task pause = export.PauseAsync(cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pause);
        Assert.True(export.IsPaused);
        gate.Release();
        export.Resume();
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task NbdServerResume_NewImageWithSeveralExports_Throws()
    {
        var server = new NbdServer([new NbdExport("a", "", new MemoryImage(Size)), new NbdExport("b", "", new MemoryImage(Size))]);
        await server.PauseAsync();
        Assert.Throws<InvalidOperationException>(() => server.Resume(new MemoryImage(Size)));
        server.Resume();
        Assert.False(server.Exports[0].IsPaused);
    }
}
