using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Filters.Mirror.Tests;

public sealed class MirrorFilterTests : IDisposable
{
    private const long Size = 8 * 1024 * 1024;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Write_Mirror_ReachesBothAndReadsComeFromThePrimary()
    {
        (MirrorFilter mirror, MemoryImage primary, MemoryImage secondary, _, _) = Create(SecondaryMode.Mirror);
        await using (mirror)
        {
            await mirror.WriteAsync(4096, Pattern(0x5a, 8192));
            await mirror.ZeroAsync(4096, 512);
            await mirror.TrimAsync(1024 * 1024, 65536);
            await mirror.FlushAsync();

            byte[] expected = Pattern(0x5a, 8192);
            Array.Clear(expected, 0, 512);
            Assert.Equal(expected, await ReadAsync(primary, 4096, 8192));
            Assert.Equal(expected, await ReadAsync(secondary, 4096, 8192));
            Assert.Equal(1, secondary.FlushCount);
            Assert.Equal(1, primary.FlushCount);

            // Reads never touch the secondary.
            await secondary.WriteAsync(4096, Pattern(0x11, 512));
            Assert.Equal(expected, await ReadAsync(mirror, 4096, 8192));
            Assert.Equal(16, mirror.SecondaryWriteSectors);
        }
    }

    [Fact]
    public async Task Write_Mirror_StartsOnBothAtOnceAndIsAnsweredWhenBothAreDone()
    {
        (MirrorFilter mirror, _, MemoryImage secondaryMemory, ScriptedImage primary, ScriptedImage secondary) = Create(SecondaryMode.Mirror);
        await using (mirror)
        {
            primary.Hold = true;
            secondary.Hold = true;
            ValueTask write = mirror.WriteAsync(0, Pattern(0x33, 4096));

            // Both were started before either finished: parallel, not one after the other.
            Assert.Equal(1, primary.HeldCount);
            Assert.Equal(1, secondary.HeldCount);
            primary.ReleaseHeld();
            Task pending = write.AsTask();
            await Task.Yield();
            Assert.False(pending.IsCompleted);
            secondary.ReleaseHeld();
            await pending.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(Pattern(0x33, 4096), await ReadAsync(secondaryMemory, 0, 4096));
        }
    }

    [Fact]
    public async Task Write_SecondaryFails_DroppedAndClosedWithoutAnErrorAndThePrimaryServesOn()
    {
        (MirrorFilter mirror, MemoryImage primary, _, _, ScriptedImage secondary) = Create(SecondaryMode.Mirror, out SecondaryState state);
        await using (mirror)
        {
            secondary.FailWith = Errno.EIO;
            await mirror.WriteAsync(0, Pattern(0x44, 4096));
            Assert.Equal(1, state.MirrorFailed);
            Assert.Null(mirror.ListedSecondary);
            SpinWait.SpinUntil(() => secondary.Disposed, TimeSpan.FromMinutes(1));
            Assert.True(secondary.Disposed);

            int started = secondary.Started;
            await mirror.WriteAsync(8192, Pattern(0x45, 4096));
            await mirror.FlushAsync();
            Assert.Equal(started, secondary.Started);
            Assert.Equal(Pattern(0x44, 4096), await ReadAsync(primary, 0, 4096));
            Assert.Equal(Pattern(0x45, 4096), await ReadAsync(primary, 8192, 4096));
        }
    }

    [Fact]
    public async Task Write_PrimaryFails_TheGuestSeesIt()
    {
        (MirrorFilter mirror, _, _, ScriptedImage primary, _) = Create(SecondaryMode.Mirror, out SecondaryState state);
        await using (mirror)
        {
            primary.FailWith = Errno.EIO;
            ErrnoIOException e = await Assert.ThrowsAsync<ErrnoIOException>(async () => await mirror.WriteAsync(0, Pattern(1, 512)));
            Assert.Equal(Errno.EIO, e.Errno);
            Assert.Equal(0, state.MirrorFailed);
        }
    }

    [Fact]
    public void Open_SecondaryOfAnotherSize_Einval()
    {
        using var primary = new MemoryImage(Size);
        using var secondary = new MemoryImage(Size - 512);
        ImageOpenException e = Assert.Throws<ImageOpenException>(() => MirrorFilter.Open(primary, secondary, SecondaryMode.Mirror, new SecondaryState(null)));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public async Task Standby_PrimaryOutOfSpace_ChangesGoToTheSecondaryAndReadsFindTheNewestData()
    {
        (MirrorFilter mirror, MemoryImage primaryMemory, MemoryImage secondaryMemory, ScriptedImage primary, _) = Create(SecondaryMode.Standby, out SecondaryState state);
        await using (mirror)
        {
            await mirror.WriteAsync(0, Pattern(0x01, 65536));
            Assert.Equal(Pattern(0x01, 65536), await ReadAsync(primaryMemory, 0, 65536));
            Assert.Equal(new byte[65536], await ReadAsync(secondaryMemory, 0, 65536));
            Assert.Null(mirror.ListedSecondary);

            primary.FailWith = Errno.ENOSPC;
            await mirror.WriteAsync(4096, Pattern(0x02, 1024));
            Assert.True(File.Exists(state.EnospcSignalPath));
            Assert.NotNull(mirror.ListedSecondary);
            int refused = primary.Started;
            await mirror.WriteAsync(16384, Pattern(0x03, 512));
            Assert.Equal(refused, primary.Started);
            Assert.Equal(3, state.RedirectedSectors);

            // The guest's view: old data from the primary around what went to the secondary.
            byte[] expected = Pattern(0x01, 65536);
            Pattern(0x02, 1024).CopyTo(expected, 4096);
            Pattern(0x03, 512).CopyTo(expected, 16384);
            Assert.Equal(expected, await ReadAsync(mirror, 0, 65536));
            Assert.Equal(ImageCapabilities.None, mirror.Capabilities & ImageCapabilities.Extents);
        }
    }

    [Fact]
    public async Task Mirror_PrimaryOutOfSpace_TheWriteSucceedsFromTheSecondary()
    {
        (MirrorFilter mirror, _, _, ScriptedImage primary, ScriptedImage secondary) = Create(SecondaryMode.Mirror, out SecondaryState state);
        await using (mirror)
        {
            await mirror.WriteAsync(0, Pattern(0x01, 8192));
            primary.FailWith = Errno.ENOSPC;
            await mirror.WriteAsync(512, Pattern(0x02, 512));
            Assert.Equal(1, state.RedirectedSectors);
            Assert.True(File.Exists(state.EnospcSignalPath));

            byte[] expected = Pattern(0x01, 8192);
            Pattern(0x02, 512).CopyTo(expected, 512);
            Assert.Equal(expected, await ReadAsync(mirror, 0, 8192));

            // The secondary now holds data the primary lacks: its failures reach the guest, it is never dropped.
            secondary.FailWith = Errno.EIO;
            await Assert.ThrowsAsync<ErrnoIOException>(async () => await mirror.WriteAsync(0, Pattern(3, 512)));
            Assert.Equal(0, state.MirrorFailed);
            Assert.NotNull(mirror.ListedSecondary);
        }
    }

    [Fact]
    public async Task Write_MirrorWithCompletedImages_AllocatesNothing()
    {
        // Memory images on both sides: the scripted test layer allocates a closure per call itself.
        await using (MirrorFilter mirror = MirrorFilter.Open(new MemoryImage(Size), new MemoryImage(Size), SecondaryMode.Mirror, new SecondaryState(null)))
        {
            ReadOnlyMemory<byte> data = Pattern(7, 4096);
            for (int i = 0; i < 100; i++)
            {
                await mirror.WriteAsync(i * 4096L, data);
            }

            Allocations.AssertNoneInSomeRound(
                () =>
                {
                    for (int i = 0; i < 1000; i++)
                    {
                        mirror.WriteAsync(i % 100 * 4096L, data).AssertCompletedInline();
                        mirror.FlushAsync().AssertCompletedInline();
                    }
                },
                "1000 mirrored writes and flushes");
        }
    }

    [Fact]
    public void RedirectMap_MarkedRuns_AreExact()
    {
        var map = new RedirectMap(64L * 1024 * 1024);
        map.Mark(512 * 63, 512 * 3);
        map.Mark(8192L * 512 - 512, 1024);
        Assert.False(map.IsMarked(62));
        Assert.True(map.IsMarked(63) && map.IsMarked(64) && map.IsMarked(65));
        Assert.False(map.IsMarked(66));
        Assert.Equal(63, map.Run(0, 100, out bool redirected));
        Assert.False(redirected);
        Assert.Equal(3, map.Run(63, 100, out redirected));
        Assert.True(redirected);
        Assert.Equal(2, map.Run(8191, 10, out redirected));
        Assert.True(redirected);
    }

    private (MirrorFilter Mirror, MemoryImage PrimaryMemory, MemoryImage SecondaryMemory, ScriptedImage Primary, ScriptedImage Secondary) Create(SecondaryMode mode) =>
        Create(mode, out _);

    private (MirrorFilter Mirror, MemoryImage PrimaryMemory, MemoryImage SecondaryMemory, ScriptedImage Primary, ScriptedImage Secondary) Create(SecondaryMode mode, out SecondaryState state)
    {
        var primaryMemory = new MemoryImage(Size);
        var secondaryMemory = new MemoryImage(Size);
        var primary = new ScriptedImage(primaryMemory, "primary");
        var secondary = new ScriptedImage(secondaryMemory, "secondary");
        state = new SecondaryState(_dir.File("tapdisk-enospc7"));
        return (MirrorFilter.Open(primary, secondary, mode, state), primaryMemory, secondaryMemory, primary, secondary);
    }

    private static byte[] Pattern(byte value, int length)
    {
        byte[] data = new byte[length];
        Array.Fill(data, value);
        return data;
    }

    private static async Task<byte[]> ReadAsync(IBlockImage image, long offset, int length)
    {
        byte[] data = new byte[length];
        await image.ReadAsync(offset, data);
        return data;
    }
}
