using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Filters.Cache.Tests;

public sealed class LocalCacheFilterTests
{
    private const int Size = 1024 * 1024;
    private const long Plenty = 1L << 40;

    private static MemoryImage Parent(int seed = 1)
    {
        var parent = new MemoryImage(Size);
        parent.WriteAsync(0, DiskContent.Pattern(Size, seed)).AsTask().GetAwaiter().GetResult();
        return parent;
    }

    private static byte[] Read(LocalCacheFilter image, long offsetBytes, int length)
    {
        byte[] buffer = new byte[length];
        image.ReadAsync(offsetBytes, buffer).AsTask().GetAwaiter().GetResult();
        return buffer;
    }

    [Fact]
    public async Task Read_MissedSectors_AreWrittenBackAndReadTheSame()
    {
        byte[] expected = DiskContent.Pattern(Size, 1);
        var leaf = new OverlayImage(Parent());
        await leaf.WriteAsync(8192, Enumerable.Repeat((byte)0xAB, 4096).ToArray());
        expected.AsSpan(8192, 4096).Fill(0xAB);
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);

        DiskContent.AssertSame(expected.AsSpan(0, 65536).ToArray(), Read(lc, 0, 65536), "first read");
        await lc.DrainAsync();

        for (long at = 0; at < 65536; at += 512)
        {
            Assert.True(leaf.Holds(at), $"sector at {at} written back");
        }

        DiskContent.AssertSame(expected.AsSpan(0, 65536).ToArray(), leaf.OwnBytes(0, 65536), "leaf's own data");
        Assert.Equal(65536 - 4096, lc.WrittenBackBytes);
        Assert.False(leaf.Holds(65536));
        DiskContent.AssertSame(expected.AsSpan(0, 65536).ToArray(), Read(lc, 0, 65536), "second read");
    }

    [Fact]
    public async Task Read_AllLocal_WritesNothingBack()
    {
        var leaf = new OverlayImage(Parent());
        await leaf.WriteAsync(0, new byte[8192]);
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);

        Read(lc, 0, 8192);
        await lc.DrainAsync();

        Assert.Equal(1, leaf.Writes);
        Assert.Equal(0, lc.WriteBacks);
    }

    [Fact]
    public async Task GuestWrite_DuringTheParentRead_IsNeverOverwrittenByTheFill()
    {
        var gate = new GateFilter(Parent());
        var leaf = new OverlayImage(gate);
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);

        Task<byte[]> read = Task.Run(() => Read(lc, 0, 4096));
        gate.WaitForEntered(1);
        byte[] guest = DiskContent.Pattern(512, 99);
        await lc.WriteAsync(1024, guest);
        gate.Release();
        await read;
        await lc.DrainAsync();

        // The read saw parent data for sectors the guest has since written: writing it back would undo the write.
        byte[] expected = DiskContent.Pattern(Size, 1).AsSpan(0, 4096).ToArray();
        guest.CopyTo(expected, 1024);
        Assert.Equal(0, lc.WrittenBackBytes);
        Assert.Equal(1, lc.Abandoned);
        DiskContent.AssertSame(expected, Read(lc, 0, 4096), "after the racing read");
    }

    [Fact]
    public async Task GuestWrite_WhileAWriteBackRuns_WaitsAndLandsAfterIt()
    {
        var leaf = new OverlayImage(Parent());
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);
        leaf.HoldNextWrite();

        Read(lc, 0, 4096);
        leaf.WaitForHeldWrite();
        byte[] guest = DiskContent.Pattern(512, 7);
        ValueTask write = lc.WriteAsync(1024, guest);
        Assert.False(write.IsCompleted, "the guest write waits for the write-back holding its stripe");
        leaf.ReleaseWrite();
        await write;
        await lc.DrainAsync();

        byte[] expected = DiskContent.Pattern(Size, 1).AsSpan(0, 4096).ToArray();
        guest.CopyTo(expected, 1024);
        DiskContent.AssertSame(expected, Read(lc, 0, 4096), "guest write after the fill");
        Assert.Equal(4096, lc.WrittenBackBytes);
    }

    [Fact]
    public async Task Trim_DuringTheParentRead_AbandonsTheWriteBack()
    {
        var gate = new GateFilter(Parent());
        var leaf = new OverlayImage(gate);
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);

        Task<byte[]> read = Task.Run(() => Read(lc, 65536, 4096));
        gate.WaitForEntered(1);
        await lc.TrimAsync(65536, 512);
        gate.Release();
        await read;
        await lc.DrainAsync();

        Assert.False(leaf.Holds(65536));
        Assert.Equal(1, lc.Abandoned);
    }

    [Fact]
    public async Task LowSpace_StopsWriteBack_AndReadsStayCorrect()
    {
        var leaf = new OverlayImage(Parent());
        await using var lc = new LocalCacheFilter(leaf, () => LocalCacheFilter.MinFreeBytes - 1);

        DiskContent.AssertSame(DiskContent.Pattern(Size, 1).AsSpan(0, 8192).ToArray(), Read(lc, 0, 8192), "read");
        await lc.DrainAsync();

        Assert.False(lc.WriteBackEnabled);
        Assert.Equal(0, leaf.Writes);
    }

    [Fact]
    public async Task SpaceUsedWithinTheSecond_ForcesALook_BeforeTheFloorIsReached()
    {
        // 5 MiB free before the first write-back, then 2 MiB less per write-back (a new VHD block each, at worst).
        const long mib = 1024 * 1024;
        var leaf = new OverlayImage(Parent());
        int looks = 0;
        await using var lc = new LocalCacheFilter(leaf, () =>
        {
            looks++;
            return (5 * mib) - (leaf.Writes * 2 * mib);
        });

        Read(lc, 0, 4096);
        await lc.DrainAsync();
        Assert.Equal(1, leaf.Writes);

        // Within the same second: the first write-back may have used the room above the floor, so tapdisk looks
        // again (3 MiB free: one more worst-case write-back would cross the 2 MiB floor) and writes nothing back.
        Read(lc, 65536, 4096);
        await lc.DrainAsync();
        Assert.Equal(2, looks);
        Assert.Equal(1, leaf.Writes);
    }

    [Fact]
    public async Task Enospc_StopsWriteBackForGood_AndLosesNothing()
    {
        byte[] expected = DiskContent.Pattern(Size, 1);
        var leaf = new OverlayImage(Parent()) { Full = true };
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);

        DiskContent.AssertSame(expected.AsSpan(0, 8192).ToArray(), Read(lc, 0, 8192), "read at ENOSPC");
        await lc.DrainAsync();
        Assert.False(lc.WriteBackEnabled);

        leaf.Full = false;
        DiskContent.AssertSame(expected.AsSpan(8192, 8192).ToArray(), Read(lc, 8192, 8192), "read after ENOSPC");
        await lc.DrainAsync();
        Assert.Equal(0, leaf.Writes);
        Assert.Equal(0, lc.WrittenBackBytes);
    }

    [Fact]
    public void Wrap_SingleImageOrReadOnlyLeaf_IsNotInserted()
    {
        using var single = new MemoryImage(Size);
        Assert.Same(single, LocalCacheFilter.Wrap(single, null, out string? why));
        Assert.NotNull(why);

        using var readOnly = new OverlayImage(Parent(), readOnly: true);
        Assert.Same(readOnly, LocalCacheFilter.Wrap(readOnly, null, out why));
        Assert.NotNull(why);

        using IBlockImage wrapped = LocalCacheFilter.Wrap(new OverlayImage(Parent()), null, out why);
        Assert.IsType<LocalCacheFilter>(wrapped);
        Assert.Null(why);
    }

    [Fact]
    public async Task ParallelReadsAndWrites_ContentMatchesASerialModel()
    {
        // Writers own disjoint sectors; readers read everything. At the end every sector is the writer's last data
        // or the parent's: no write-back ever replaced a guest write.
        byte[] parent = DiskContent.Pattern(Size, 1);
        var leaf = new OverlayImage(Parent());
        await using var lc = new LocalCacheFilter(leaf, () => Plenty);
        byte[] model = (byte[])parent.Clone();
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            for (int i = 0; i < 300; i++)
            {
                int sector = (random.Next(Size / 512 / 4) * 4) + w;
                byte[] data = DiskContent.Pattern(512, (w * 1000) + i);
                await lc.WriteAsync(sector * 512L, data);
                lock (model)
                {
                    data.CopyTo(model, sector * 512);
                }
            }
        }));
        var readers = Enumerable.Range(0, 4).Select(r => Task.Run(async () =>
        {
            var random = new Random(100 + r);
            byte[] buffer = new byte[65536];
            for (int i = 0; i < 300; i++)
            {
                await lc.ReadAsync(random.Next(Size / 65536) * 65536L, buffer);
            }
        }));
        await Task.WhenAll(writers.Concat(readers));
        await lc.DrainAsync();

        DiskContent.AssertSame(model, Read(lc, 0, Size), "whole disk");
    }
}
