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
        await export.Backend.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        Assert.True(export.Backend.IsPaused);
        export.Backend.Resume();
        Assert.False(export.Backend.IsPaused);
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

        Task pause = export.Backend.PauseAsync();
        Assert.False(pause.IsCompleted);
        gate.Release();
        await pause.WaitAsync(NbdTestClient.Timeout);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        export.Backend.Resume();
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

        await export.Backend.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        await client.SendRequestAsync(CmdRead, 1, 0, 512);
        export.Backend.Resume(newImage);

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
        Task pause = export.Backend.PauseAsync(cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pause);
        Assert.True(export.Backend.IsPaused);
        gate.Release();
        export.Backend.Resume();
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Resume_NewImageWhileServing_Throws()
    {
        var export = new NbdExport("a", "", new MemoryImage(Size));
        Assert.Throws<InvalidOperationException>(() => export.Backend.Resume(new MemoryImage(Size)));
        await export.Backend.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        export.Backend.Resume();
        Assert.False(export.Backend.IsPaused);
    }
}
