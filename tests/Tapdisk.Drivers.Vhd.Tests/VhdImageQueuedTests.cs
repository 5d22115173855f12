using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

#pragma warning disable CA2012 // Each ValueTask is consumed once, by the loop.

/// <summary>Which VHD requests an io_uring loop thread runs itself, and which it leaves to the I/O workers.</summary>
public sealed class VhdImageQueuedTests
{
    private const int MiB = 1024 * 1024;
    private const int Blocks = 8;

    [Fact]
    public void MayBlock_OnALoopThread_QueuesKnownDataAndLeavesMetadataAndUnalignedWritesToWorkers()
    {
        using var dir = new TempDirectory();
        string raw = dir.File("r.raw");
        File.WriteAllBytes(raw, Enumerable.Range(0, Blocks * 2 * MiB).Select(i => (byte)(i >> 12)).ToArray());
        string vhd = dir.File("q.vhd");

        // qemu allocates 2 MiB blocks back to back, each after a 512-byte bitmap: block by block the data moves 512
        // bytes along a 4 KiB file block, so of 8 blocks exactly one starts on a 4 KiB boundary.
        QemuImg("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", raw, vhd).EnsureSuccess("qemu-img convert");
        long[] dataOffsets = DataOffsets(vhd);
        Assert.Equal(1, dataOffsets.Count(o => o % 4096 == 0));
        bool forcedThreads = Environment.GetEnvironmentVariable(IoEngine.Variable) == "threads";
        LoopThread.Run(loop =>
        {
            using IBlockImage image = Open(vhd);
            if (loop is null)
            {
                // The fallback engine: every request may block, so every one goes to the I/O workers.
                Assert.True(forcedThreads, IoEngine.Describe());
                Assert.True(image.MayBlock(BlockOperation.Read, 0, 4096));
                return;
            }

            // Bitmaps not loaded yet: finding the data needs metadata I/O.
            Assert.True(image.MayBlock(BlockOperation.Read, 0, 4096));
            AlignedMemory buffer = AlignedBufferPool.Shared.Rent(4096);
            try
            {
                for (int block = 0; block < Blocks; block++)
                {
                    long offset = (long)block * 2 * MiB;
                    // The synchronous path loads the bitmap (a full block from then on), then the data.
                    loop.Run(image.ReadAsync(offset, buffer.Memory[..4096]).AsResult());
                    Assert.Equal((byte)(offset >> 12), buffer.GetSpan()[0]);
                }
            }
            finally
            {
                AlignedBufferPool.Shared.Return(buffer);
            }

            for (int block = 0; block < Blocks; block++)
            {
                long offset = (long)block * 2 * MiB;
                Assert.False(image.MayBlock(BlockOperation.Read, offset, 4096), $"read in block {block}");
                bool aligned = dataOffsets[block] % 4096 == 0;
                Assert.True(image.MayBlock(BlockOperation.Write, offset, 4096) != aligned, $"overwrite in block {block}, data at file offset {dataOffsets[block]}");
            }

            Assert.True(image.MayBlock(BlockOperation.Read, (2 * MiB) - 4096, 8192), "a read across two blocks takes the synchronous path");
        });
    }

    [Fact]
    public void Trim_OnALoopThread_PunchesAllocatedDataThroughTheRing()
    {
        using var dir = new TempDirectory();
        string vhd = dir.File("t.vhd");
        VhdCreator.CreateDynamic(vhd, 4L * 2 * MiB);
        byte[] data = Enumerable.Repeat((byte)9, 2 * 2 * MiB).ToArray();
        using (IBlockImage image = Open(vhd))
        {
            // Blocks 0 and 1 allocated and full; blocks 2 and 3 stay unallocated.
            Run(image.WriteAsync(0, data));
        }

        long sizeBefore = new FileInfo(vhd).Length;
        long allocatedBefore = AllocatedBytes(vhd);
        bool forcedThreads = Environment.GetEnvironmentVariable(IoEngine.Variable) == "threads";
        LoopThread.Run(loop =>
        {
            using IBlockImage image = Open(vhd);
            Assert.Equal(loop is null, image.MayBlock(BlockOperation.Trim, 0, 8 * MiB));
            Assert.True(image.MayBlock(BlockOperation.Zero, 0, MiB), "zero's flags may ask for written zeros through allocation");
            if (loop is null)
            {
                Assert.True(forcedThreads, IoEngine.Describe());
                Run(image.TrimAsync(MiB, 5 * MiB));
                Run(image.ZeroAsync(0, MiB / 2));
                return;
            }

            // From the second half of block 0 into unallocated block 2: two punches, one after the other.
            ValueTask trim = image.TrimAsync(MiB, 5 * MiB);
            Assert.False(trim.IsCompleted);
            Assert.Equal(1, loop.InFlight);
            loop.Run(trim.AsResult());
            Assert.Equal(0, loop.InFlight);

            // Zero without NoHole takes the same punch when it runs here (a frontend's lone request).
            ValueTask zero = image.ZeroAsync(0, MiB / 2);
            Assert.False(zero.IsCompleted);
            loop.Run(zero.AsResult());
        });

        using (IBlockImage image = Open(vhd, readOnly: true))
        {
            byte[] all = ReadAll(image);
            Assert.False(all.AsSpan(0, MiB / 2).ContainsAnyExcept((byte)0));
            Assert.False(all.AsSpan(MiB / 2, MiB / 2).ContainsAnyExcept((byte)9));
            Assert.False(all.AsSpan(MiB).ContainsAnyExcept((byte)0));
        }

        // Holes in the data areas (3.5 MiB of the 4 written), the file's size and metadata as they were.
        Assert.Equal(sizeBefore, new FileInfo(vhd).Length);
        Assert.True(AllocatedBytes(vhd) <= allocatedBefore - (3 * MiB), $"{AllocatedBytes(vhd)} bytes still allocated of {allocatedBefore}");
        AssertQemuCheckClean(vhd);
    }

    private static long AllocatedBytes(string path)
    {
        using ImageFile file = ImageFile.Open(path, readOnly: true, direct: false);
        return file.Status.AllocatedBytes;
    }

    /// <summary>Where each block's data starts in the file (BAT sector + the 1-sector bitmap), from the dynamic header's BAT.</summary>
    private static long[] DataOffsets(string vhd)
    {
        byte[] file = File.ReadAllBytes(vhd);
        long bat = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(512 + 16));
        return Enumerable.Range(0, Blocks)
            .Select(b => ((long)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan((int)bat + (4 * b))) + 1) * 512)
            .ToArray();
    }
}
