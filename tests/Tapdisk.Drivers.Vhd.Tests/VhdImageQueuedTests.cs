using System.Runtime.ExceptionServices;
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
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using IoLoop? loop = IoLoop.TryCreateForCurrentThread();
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
