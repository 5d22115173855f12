using System.Diagnostics;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Raw.Tests;

#pragma warning disable CA2012 // The tests hold ValueTasks on purpose (to see them pending), and consume each once.

/// <summary>
/// The io_uring engine through the raw driver on real O_DIRECT files. CI runs this class twice: with the engine this
/// kernel offers (io_uring) and with <c>TAPDISK_IO_ENGINE=threads</c>, where each test checks the fallback instead.
/// </summary>
public sealed class IoLoopTests
{
    private const int Block = 4096;
    private const int Requests = 64;
    private const int MiB = 1024 * 1024;

    private static bool ForcedThreads => Environment.GetEnvironmentVariable(IoEngine.Variable) == "threads";

    [Fact]
    public void Engine_IsIoUringHere_UnlessForcedOff()
    {
        Assert.True(IoEngine.Kind == (ForcedThreads ? IoEngineKind.Threads : IoEngineKind.IoUring), $"engine: {IoEngine.Describe()}");
    }

    [Fact]
    public void ManyWritesAndReads_OneThread_AllInFlightTogetherThenRoundTrip()
    {
        using var dir = new TempDirectory();
        string path = dir.File("r.raw");
        File.WriteAllBytes(path, new byte[Requests * Block * 2]);
        LoopThread.Run(loop =>
        {
            using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
            Assert.True(image.IsDirect);
            var buffers = new AlignedMemory[Requests];
            var pending = new ValueTask[Requests];
            try
            {
                for (int i = 0; i < Requests; i++)
                {
                    buffers[i] = AlignedBufferPool.Shared.Rent(Block);
                    buffers[i].GetSpan()[..Block].Fill((byte)(i + 1));

                    // Every other block, backwards: nothing sequential for the kernel to merge.
                    pending[i] = image.WriteAsync((long)(Requests - 1 - i) * 2 * Block, buffers[i].Memory[..Block]);
                }

                if (loop is null)
                {
                    // Fallback: blocking pwrite, finished before the call returns.
                    Assert.All(pending, p => Assert.True(p.IsCompletedSuccessfully));
                }
                else
                {
                    // Prepared, not yet submitted: all 64 wait for the loop's next system call, together.
                    Assert.All(pending, p => Assert.False(p.IsCompleted));
                    Assert.Equal(Requests, loop.InFlight);
                    Assert.False(image.MayBlock(BlockOperation.Read, 0, Block));
                }

                Complete(loop, pending);
                Complete(loop, [image.FlushAsync()]);
                for (int i = 0; i < Requests; i++)
                {
                    buffers[i].GetSpan()[..Block].Clear();
                    pending[i] = image.ReadAsync((long)(Requests - 1 - i) * 2 * Block, buffers[i].Memory[..Block]);
                }

                Complete(loop, pending);
                for (int i = 0; i < Requests; i++)
                {
                    Assert.True(buffers[i].GetSpan()[..Block].IndexOfAnyExcept((byte)(i + 1)) < 0, $"block {i}");
                }
            }
            finally
            {
                foreach (AlignedMemory? b in buffers)
                {
                    if (b is not null)
                    {
                        AlignedBufferPool.Shared.Return(b);
                    }
                }
            }
        });

        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(Requests, file[0]);
        Assert.Equal(1, file[(Requests - 1) * 2 * Block]);
        Assert.Equal(0, file[Block]);
    }

    [Fact]
    public void ReadPastEndOfFile_ThroughTheRing_ReturnsTheShortCount()
    {
        using var dir = new TempDirectory();
        string path = dir.File("short.raw");
        File.WriteAllBytes(path, new byte[3 * Block]);
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            AlignedMemory buffer = AlignedBufferPool.Shared.Rent(4 * Block);
            try
            {
                ValueTask<int> read = file.ReadAsync(buffer.Memory[..(4 * Block)], 2 * Block);
                Assert.Equal(loop is null, read.IsCompleted);
                Assert.Equal(Block, loop is null ? read.Result : loop.Run(read));
            }
            finally
            {
                AlignedBufferPool.Shared.Return(buffer);
            }
        });
    }

    [Fact]
    public void SynchronousScope_OnALoopThread_BlocksInsteadOfQueuing()
    {
        using var dir = new TempDirectory();
        string path = dir.File("sync.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)7, 2 * Block).ToArray());
        LoopThread.Run(loop =>
        {
            if (loop is null)
            {
                // The fallback has no loop to step out of; the io_uring run covers the scope.
                Assert.True(ForcedThreads, IoEngine.Describe());
                return;
            }

            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            AlignedMemory buffer = AlignedBufferPool.Shared.Rent(Block);
            try
            {
                using (IoLoop.Synchronous())
                {
                    Assert.Null(IoLoop.Current);
                    Assert.True(ImageFile.MayBlockHere);
                    ValueTask<int> read = file.ReadAsync(buffer.Memory[..Block], Block);
                    Assert.True(read.IsCompletedSuccessfully);
                    Assert.Equal(Block, read.Result);
                    Assert.Equal(0, loop!.InFlight);
                }

                Assert.Same(loop, IoLoop.Current);
                Assert.Equal(7, buffer.GetSpan()[Block - 1]);
            }
            finally
            {
                AlignedBufferPool.Shared.Return(buffer);
            }
        });
    }

    [Fact]
    public void KernelError_ComesBackAsNegativeErrno()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro.raw");
        File.WriteAllBytes(path, new byte[Block]);
        LoopThread.Run(loop =>
        {
            if (loop is null)
            {
                Assert.True(ForcedThreads, IoEngine.Describe());
                return;
            }

            using SafeFdHandle readOnly = PosixFile.Open(path, OpenFlags.ReadOnly);
            byte[] data = new byte[Block];

            // A write through a descriptor opened read-only: the kernel answers EBADF in the completion.
            Assert.Equal(-Errno.EBADF, loop!.Run(loop.StartAsync(IoUringOp.Write, readOnly, data, 0)));
        });
    }

    [Fact]
    public void Trim_OnALoop_PunchesTheHoleThroughTheRing()
    {
        using var dir = new TempDirectory();
        string path = dir.File("trim.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)5, 4 * MiB).ToArray());
        long allocatedBefore = AllocatedBytes(path);
        LoopThread.Run(loop =>
        {
            using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
            Assert.Equal(loop is null, image.MayBlock(BlockOperation.Trim, MiB, MiB));
            Assert.Equal(loop is null, image.MayBlock(BlockOperation.Zero, MiB, MiB));
            Assert.True(image.MayBlock(BlockOperation.Query, 0, MiB), "lseek(SEEK_DATA) has no ring opcode");

            ValueTask trim = image.TrimAsync(MiB, MiB);
            if (loop is not null)
            {
                // Prepared, not yet submitted: the loop thread did not make the system call.
                Assert.False(trim.IsCompleted);
                Assert.Equal(1, loop.InFlight);
            }

            Complete(loop, [trim]);
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: false);
            Assert.Equal(MiB, file.Seek(0, data: false));
            Assert.Equal(2 * MiB, file.Seek(MiB, data: true));
        });

        Assert.True(AllocatedBytes(path) <= allocatedBefore - MiB, "the trimmed range was deallocated");
        byte[] content = File.ReadAllBytes(path);
        Assert.False(content.AsSpan(MiB, MiB).ContainsAnyExcept((byte)0));
        Assert.False(content.AsSpan(0, MiB).ContainsAnyExcept((byte)5));
        Assert.False(content.AsSpan(2 * MiB).ContainsAnyExcept((byte)5));
    }

    [Fact]
    public void Zero_NoHoleFua_OnALoop_ZeroesThroughTheRingThenFlushes()
    {
        using var dir = new TempDirectory();
        string path = dir.File("zero.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)6, 4 * MiB).ToArray());
        long allocatedBefore = AllocatedBytes(path);
        LoopThread.Run(loop =>
        {
            using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
            ValueTask zero = image.ZeroAsync(MiB, 2 * MiB, ZeroFlags.NoHole | ZeroFlags.Fua);
            if (loop is not null)
            {
                // FALLOC_FL_ZERO_RANGE first; the fdatasync follows only once it has completed.
                Assert.False(zero.IsCompleted);
                Assert.Equal(1, loop.InFlight);
            }

            Complete(loop, [zero]);
            Assert.Equal(0, loop?.InFlight ?? 0);
        });

        Assert.True(AllocatedBytes(path) >= allocatedBefore, "NO_HOLE keeps the range allocated");
        byte[] content = File.ReadAllBytes(path);
        Assert.False(content.AsSpan(MiB, 2 * MiB).ContainsAnyExcept((byte)0));
        Assert.False(content.AsSpan(0, MiB).ContainsAnyExcept((byte)6));
        Assert.False(content.AsSpan(3 * MiB).ContainsAnyExcept((byte)6));
    }

    [Fact]
    public void WriteZeros_OnALoop_WritesChunkAfterChunkThroughTheRing()
    {
        using var dir = new TempDirectory();
        string path = dir.File("wz.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)7, 4 * MiB).ToArray());
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: false, direct: true);

            // Zero's last resort (a file system without fallocate): more than one chunk of the shared zero buffer.
            int length = AlignedBufferPool.ChunkBytes + (2 * Block);
            ValueTask write = file.WriteZerosAsync(Block, length);
            if (loop is not null)
            {
                Assert.False(write.IsCompleted);
                Assert.Equal(1, loop.InFlight);
            }

            Complete(loop, [write]);
        });

        byte[] content = File.ReadAllBytes(path);
        int zeroed = AlignedBufferPool.ChunkBytes + (2 * Block);
        Assert.False(content.AsSpan(Block, zeroed).ContainsAnyExcept((byte)0));
        Assert.Equal(7, content[Block - 1]);
        Assert.Equal(7, content[Block + zeroed]);
    }

    [Fact]
    public void TrimAndZero_OnALoop_AllocateNothingPerRequest()
    {
        using var dir = new TempDirectory();
        string path = dir.File("alloc.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)4, 64 * Block).ToArray());
        LoopThread.Run(loop =>
        {
            using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
            for (int i = 0; i < 64; i++)
            {
                Finish(loop, image.TrimAsync(i * Block, Block));
                Finish(loop, image.ZeroAsync(i * Block, Block, ZeroFlags.NoHole));
            }

            Allocations.AssertNoneInSomeRound(
                () =>
                {
                    for (int i = 0; i < 256; i++)
                    {
                        Finish(loop, image.TrimAsync(i % 64 * Block, Block));
                        Finish(loop, image.ZeroAsync(i % 64 * Block, Block, ZeroFlags.NoHole));
                    }
                },
                "256 trims and zeroes");
        });
    }

    [Fact]
    public void Fallocate_RefusedByTheKernel_IsFalse_ThroughTheRingAsSynchronously()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro-falloc.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)8, 2 * Block).ToArray());
        LoopThread.Run(loop =>
        {
            // A read-only descriptor: fallocate fails with EBADF, which callers see as "cannot" (as EOPNOTSUPP).
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            Assert.False(file.TryPunchHole(0, Block));
            ValueTask<bool> punch = file.TryPunchHoleAsync(0, Block);
            ValueTask<bool> zero = file.TryZeroRangeAsync(Block, Block);
            Assert.Equal(loop is null, punch.IsCompleted);
            Assert.False(loop is null ? punch.Result : loop.Run(punch));
            Assert.False(loop is null ? zero.Result : loop.Run(zero));
            if (loop is not null)
            {
                Assert.Equal(-Errno.EBADF, loop.Run(loop.StartFallocateAsync(file.Handle, FallocateMode.PunchHole, 0, Block)));
            }
        });

        Assert.False(File.ReadAllBytes(path).AsSpan().ContainsAnyExcept((byte)8));
    }

    /// <summary>
    /// Eight times more requests than the submission ring holds, all started before the loop runs once: the loop
    /// must submit in batches, and the completions that pile up past the completion ring's size must neither be lost
    /// nor fail a later submission (the kernel refuses a submission with EBUSY while its completion ring overflows).
    /// </summary>
    [Fact]
    public void MoreRequestsThanTheRingsHold_AllComplete()
    {
        const int Many = 1024;
        using var dir = new TempDirectory();
        string path = dir.File("many.raw");
        byte[] content = new byte[Many * 512];
        for (int i = 0; i < Many; i++)
        {
            content[i * 512] = (byte)i;
        }

        File.WriteAllBytes(path, content);
        LoopThread.Run(loop =>
        {
            if (loop is null)
            {
                Assert.True(ForcedThreads, IoEngine.Describe());
                return;
            }

            using SafeFdHandle file = PosixFile.Open(path, OpenFlags.ReadOnly);
            byte[][] buffers = new byte[Many][];
            var reads = new ValueTask<int>[Many];
            for (int i = 0; i < Many; i++)
            {
                buffers[i] = new byte[512];
                reads[i] = loop!.StartAsync(IoUringOp.Read, file, buffers[i], (ulong)i * 512);
            }

            Assert.Equal(Many, loop!.InFlight);
            for (int i = 0; i < Many; i++)
            {
                Assert.Equal(512, loop.Await(reads[i]));
                Assert.Equal((byte)i, buffers[i][0]);
            }

            Assert.Equal(0, loop.InFlight);
        });
    }

    /// <summary>
    /// Completions of one pass can leave work for the pass's end (NBD gathers their replies into one send): the loop
    /// calls the listener after the last of them, outside the pass, once per registration, and refuses a registration
    /// from outside a pass (nothing would ever call it).
    /// </summary>
    [Fact]
    public void PassEndListener_RunsAfterThePassesCompletions_OncePerRegistration()
    {
        const int Reads = 8;
        using var dir = new TempDirectory();
        string path = dir.File("pass.raw");
        File.WriteAllBytes(path, new byte[Reads * 512]);
        LoopThread.Run(loop =>
        {
            if (loop is null)
            {
                Assert.True(ForcedThreads, IoEngine.Describe());
                return;
            }

            Assert.False(loop!.InPass);
            Assert.Throws<InvalidOperationException>(() => loop.AtPassEnd(new PassCounter(loop)));
            var listener = new PassCounter(loop);
            using SafeFdHandle file = PosixFile.Open(path, OpenFlags.ReadOnly);
            var reads = new Task[Reads];
            for (int i = 0; i < Reads; i++)
            {
                reads[i] = listener.ReadAndRegister(file, i);
            }

            while (listener.Completed < Reads)
            {
                loop.RunOnce();
            }

            Assert.All(reads, r => Assert.True(r.IsCompletedSuccessfully));

            // Every completion was followed by an end of its pass, each registration answered exactly once.
            Assert.Equal(Reads, listener.SeenAtLastEnd);
            Assert.Equal(listener.Registrations, listener.Ends);
            Assert.InRange(listener.Ends, 1, Reads);
            Assert.False(listener.EndRanInPass);
        });
    }

    private sealed class PassCounter(IoLoop loop) : IPassEndListener
    {
        private bool _registered;

        public int Completed { get; private set; }

        public int Registrations { get; private set; }

        public int Ends { get; private set; }

        public int SeenAtLastEnd { get; private set; }

        public bool EndRanInPass { get; private set; }

        public void OnPassEnd()
        {
            EndRanInPass |= loop.InPass;
            _registered = false;
            Ends++;
            SeenAtLastEnd = Completed;
        }

        public async Task ReadAndRegister(SafeFdHandle file, int index)
        {
            byte[] buffer = new byte[512];
            int n = await loop.StartAsync(IoUringOp.Read, file, buffer, (ulong)index * 512);
            Assert.Equal(512, n);
            Assert.True(loop.InPass);
            Completed++;
            if (!_registered)
            {
                _registered = true;
                Registrations++;
                loop.AtPassEnd(this);
            }
        }
    }

    [Fact]
    public void FixedBuffers_PooledBuffersAreRegistered_AndEveryByteLandsInItsOwnBuffer()
    {
        using var dir = new TempDirectory();
        string path = dir.File("fixed.raw");
        const int Buffers = 300; // more than the loop's 128 slots: the table fills, then recycles
        const int Size = 8 * Block;
        File.WriteAllBytes(path, new byte[Buffers * Size]);
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: false, direct: true);
            var buffers = new AlignedMemory[Buffers];
            try
            {
                for (int i = 0; i < Buffers; i++)
                {
                    // Not from the pool: 300 distinct buffers, each its own registration.
                    buffers[i] = new AlignedMemory(Size);
                    buffers[i].GetSpan().Fill((byte)(i % 251));
                }

                // Writes and reads of slices (a registered request names an address inside its slot's range).
                var writes = new ValueTask[Buffers];
                for (int i = 0; i < Buffers; i++)
                {
                    writes[i] = file.WriteAsync(buffers[i].Memory[Block..], ((long)i * Size) + Block);
                }

                Complete(loop, writes);
                if (loop is not null)
                {
                    Assert.True(loop.FixedBuffers, $"registered buffers refused on this kernel ({IoEngine.Describe()})");
                    Assert.InRange(loop.RegisteredBuffers, 64, 128);
                }

                for (int i = 0; i < Buffers; i++)
                {
                    buffers[i].GetSpan().Clear();
                }

                var reads = new ValueTask<int>[Buffers];
                for (int i = 0; i < Buffers; i++)
                {
                    reads[i] = file.ReadAsync(buffers[i].Memory[(2 * Block)..], ((long)i * Size) + (2 * Block));
                }

                for (int i = 0; i < Buffers; i++)
                {
                    Assert.Equal(Size - (2 * Block), loop is null ? reads[i].Result : loop.Run(reads[i]));
                    Span<byte> span = buffers[i].GetSpan();
                    Assert.True(span[..(2 * Block)].IndexOfAnyExcept((byte)0) < 0, $"buffer {i}: bytes before the slice");
                    Assert.True(span[(2 * Block)..].IndexOfAnyExcept((byte)(i % 251)) < 0, $"buffer {i}: the slice");
                }
            }
            finally
            {
                foreach (AlignedMemory? b in buffers)
                {
                    ((IDisposable?)b)?.Dispose();
                }
            }
        });
    }

    [Fact]
    public void FixedBuffers_BigBuffers_StayWithinTheLoopsBudget_AndReadCorrectly()
    {
        using var dir = new TempDirectory();
        string path = dir.File("big.raw");
        const int Buffers = 48; // 48 MiB of 1 MiB buffers against a 32 MiB budget, plus one 2 MiB buffer (never registered)
        byte[] content = new byte[2 * MiB];
        new Random(7).NextBytes(content);
        File.WriteAllBytes(path, content);
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            var buffers = new AlignedMemory[Buffers + 1];
            try
            {
                for (int round = 0; round < 2; round++)
                {
                    var reads = new ValueTask<int>[Buffers + 1];
                    for (int i = 0; i <= Buffers; i++)
                    {
                        buffers[i] ??= new AlignedMemory(i == Buffers ? 2 * MiB : MiB);
                        buffers[i].GetSpan().Clear();
                        reads[i] = file.ReadAsync(buffers[i].Memory, i == Buffers ? 0 : (i % 2) * MiB);
                    }

                    for (int i = 0; i <= Buffers; i++)
                    {
                        int expected = buffers[i].Length;
                        Assert.Equal(expected, loop is null ? reads[i].Result : loop.Run(reads[i]));
                        int from = i == Buffers ? 0 : (i % 2) * MiB;
                        Assert.True(buffers[i].GetSpan().SequenceEqual(content.AsSpan(from, expected)), $"round {round}, buffer {i}");
                    }

                    if (loop is not null)
                    {
                        Assert.InRange(loop.RegisteredBuffers, 1, 32);
                    }
                }
            }
            finally
            {
                foreach (AlignedMemory? b in buffers)
                {
                    ((IDisposable?)b)?.Dispose();
                }
            }
        });
    }

    [Fact]
    public void FixedBuffers_SlotEvictedWhileARequestNamingItWaitsUnsubmitted_TheRequestStillReadsItsBuffer()
    {
        const int Slots = 128;
        using var dir = new TempDirectory();
        string path = dir.File("evict.raw");
        byte[] content = new byte[Block * 256];
        new Random(11).NextBytes(content);
        File.WriteAllBytes(path, content);
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            var held = new AlignedMemory[Slots];
            var fresh = new AlignedMemory[40];
            try
            {
                // Fill every slot (each buffer read once, to completion): every slot's CLOCK bit is now set.
                for (int i = 0; i < Slots; i++)
                {
                    held[i] = new AlignedMemory(Block);
                    ValueTask<int> read = file.ReadAsync(held[i].Memory, (long)i * Block);
                    Assert.Equal(Block, loop is null ? read.Result : loop.Run(read));
                }

                // One batch, nothing submitted yet: a hit on the first slot, then 40 new buffers. 16 misses sweep the
                // whole table clearing bits; the 17th comes back round to the first slot, whose request still waits.
                held[0].GetSpan().Clear();
                ValueTask<int> first = file.ReadAsync(held[0].Memory, 200L * Block);
                var reads = new ValueTask<int>[fresh.Length];
                for (int i = 0; i < fresh.Length; i++)
                {
                    fresh[i] = new AlignedMemory(Block);
                    reads[i] = file.ReadAsync(fresh[i].Memory, (long)(i + 1) * Block);
                }

                Assert.Equal(Block, loop is null ? first.Result : loop.Run(first));
                Assert.True(held[0].GetSpan().SequenceEqual(content.AsSpan(200 * Block, Block)), "the request queued before the eviction");
                for (int i = 0; i < fresh.Length; i++)
                {
                    Assert.Equal(Block, loop is null ? reads[i].Result : loop.Run(reads[i]));
                    Assert.True(fresh[i].GetSpan().SequenceEqual(content.AsSpan((i + 1) * Block, Block)), $"new buffer {i}");
                }
            }
            finally
            {
                foreach (AlignedMemory? b in held.Concat(fresh))
                {
                    ((IDisposable?)b)?.Dispose();
                }
            }
        });
    }

    [Fact]
    public void FixedBuffers_BufferFreedAndAnotherMapped_TheReadLandsInTheNewOne()
    {
        // A buffer this size is its own mapping, unmapped when disposed, and the kernel places the next mapping of the
        // same size in the hole it left: the same address over fresh pages. A registration found by address would read
        // into the old, pinned pages.
        const int Size = AlignedMemory.MappedFromBytes;
        using var dir = new TempDirectory();
        string path = dir.File("remap.raw");
        byte[] content = new byte[Size];
        content.AsSpan().Fill(0x5C);
        File.WriteAllBytes(path, content);
        LoopThread.Run(loop =>
        {
            using ImageFile file = ImageFile.Open(path, readOnly: true, direct: true);
            // Another thread of this test process (a test class running in parallel, the GC) may take the hole first:
            // map until an address comes back, at most 24 buffers (within a loop's 32 MiB registration budget).
            var addresses = new HashSet<ulong>();
            int rounds = 0;
            while (addresses.Count == rounds && rounds < 24)
            {
                int round = rounds++;
                using var buffer = new AlignedMemory(Size);
                using (System.Buffers.MemoryHandle pinned = buffer.Pin())
                {
                    addresses.Add(IoUring.AddressOf(pinned));
                }

                ValueTask<int> read = file.ReadAsync(buffer.Memory, 0);
                Assert.Equal(Size, loop is null ? read.Result : loop.Run(read));
                Assert.True(buffer.GetSpan().IndexOfAnyExcept((byte)0x5C) < 0, $"round {round}");
            }

            // The case this test is for: an address came back for another buffer.
            Assert.True(addresses.Count < rounds, "every buffer got a new address; the case is not exercised");
            if (loop is not null)
            {
                Assert.Equal(rounds, loop.RegisteredBuffers);
            }
        });
    }

    /// <summary>
    /// Extent queries answer from the last data run found; every call that makes a hole (a trim through the ring or
    /// not, a zero, a truncate) must forget it, or the map would call the hole data. Each query here lands inside the
    /// run the one before it found.
    /// </summary>
    [Fact]
    public void Extents_AfterHolesAreMadeInsideAKnownDataRun_ReportTheHoles()
    {
        using var dir = new TempDirectory();
        string path = dir.File("runs.raw");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)3, 4 * MiB).ToArray());
        LoopThread.Run(loop =>
        {
            using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
            Assert.Equal([(0L, 4L * MiB, ExtentFlags.Data)], Extents(image, 0, 4 * MiB));

            Complete(loop, [image.TrimAsync(MiB, MiB)]);
            Assert.Equal([(MiB, MiB, ExtentFlags.Hole | ExtentFlags.Zero), (2L * MiB, MiB, ExtentFlags.Data)], Extents(image, MiB, 2 * MiB));

            Complete(loop, [image.ZeroAsync(2 * MiB, MiB / 2)]);
            Assert.Equal([(2L * MiB, MiB / 2, ExtentFlags.Hole | ExtentFlags.Zero), ((2L * MiB) + (MiB / 2), MiB / 2, ExtentFlags.Data)], Extents(image, 2 * MiB, MiB));

            // A write into a hole only adds data: the map follows it.
            Complete(loop, [image.WriteAsync(MiB, Enumerable.Repeat((byte)4, 4096).ToArray())]);
            Assert.Equal([(MiB, 4096L, ExtentFlags.Data), (MiB + 4096L, MiB - 4096, ExtentFlags.Hole | ExtentFlags.Zero)], Extents(image, MiB, MiB));
        });

        using (ImageFile file = ImageFile.Open(path, readOnly: false, direct: false))
        {
            Assert.Equal((3L * MiB, 4L * MiB), file.FindData(3 * MiB));
            file.SetLength(3 * MiB);
            file.SetLength(4 * MiB);
            Assert.Equal(-1, file.FindData(3 * MiB).Start);
        }
    }

    private static (long Offset, long Length, ExtentFlags Flags)[] Extents(RawImage image, long offset, long length)
    {
        var extents = new ExtentList();
        ValueTask query = image.GetExtentsAsync(offset, length, extents);
        Assert.True(query.IsCompletedSuccessfully, "extent queries are synchronous");
        return [.. extents.AsSpan().ToArray().Select(e => (e.OffsetBytes, e.LengthBytes, e.Flags))];
    }

    [Fact]
    public void Post_FromAnotherThread_RunsOnTheLoopsThreadAtItsNextPass()
    {
        LoopThread.Run(loop =>
        {
            if (loop is null)
            {
                Assert.True(ForcedThreads, IoEngine.Describe());
                return;
            }

            var item = new RecordingItem();
            bool posted = false;

            // Post only once this thread sleeps in io_uring_enter (x86-64 syscall 426, seen in /proc): the post's own
            // wake-up must end that wait. A lost one would leave it asleep until the guard wakes it, and fail the test.
            string task = new FileInfo("/proc/thread-self").LinkTarget!;
            var poster = new Thread(() =>
            {
                var clock = Stopwatch.StartNew();
                while (!File.ReadAllText($"/proc/{task}/syscall").StartsWith("426 ", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromMinutes(1))
                {
                    Thread.Yield();
                }

                posted = loop.Post(item);
            });
            bool guardFired = false;
            poster.Start();
            using (var guard = new Timer(_ => { guardFired = true; loop.Wake(); }, null, TimeSpan.FromMinutes(1), Timeout.InfiniteTimeSpan))
            {
                loop.RunOnce();
            }

            poster.Join();
            Assert.True(posted);
            Assert.False(guardFired, "the post did not wake the loop");
            Assert.Equal(1, item.Runs);
            Assert.Equal(Environment.CurrentManagedThreadId, item.Thread);
        });
    }

    [Fact]
    public void Post_ToAClosingLoop_WorkLeftRunsOnThePoolAndLaterPostsAreRefused()
    {
        var left = new RecordingItem();
        var late = new RecordingItem();
        int loopThread = 0;
        IoLoop? closed = null;
        LoopThread.Run(loop =>
        {
            loopThread = Environment.CurrentManagedThreadId;
            closed = loop;
            Assert.True(loop is null || loop.Post(left));
        });

        if (closed is null)
        {
            Assert.True(ForcedThreads, IoEngine.Describe());
            return;
        }

        Assert.True(left.Ran.Wait(TimeSpan.FromMinutes(1)), "work posted before the loop closed never ran");
        Assert.NotEqual(loopThread, left.Thread);
        Assert.False(closed.Post(late));
        Assert.Equal(0, late.Runs);
    }

    private sealed class RecordingItem : IThreadPoolWorkItem
    {
        public ManualResetEventSlim Ran { get; } = new();

        public int Runs { get; private set; }

        public int Thread { get; private set; }

        public void Execute()
        {
            Runs++;
            Thread = Environment.CurrentManagedThreadId;
            Ran.Set();
        }
    }

    private static void Complete(IoLoop? loop, ValueTask[] tasks)
    {
        foreach (ValueTask task in tasks)
        {
            if (loop is null)
            {
                Assert.True(task.IsCompletedSuccessfully);
                task.GetAwaiter().GetResult();
            }
            else
            {
                loop.Run(task.AsResult());
            }
        }
    }


    /// <summary>Runs the loop (without the wake-up <see cref="IoLoop.Run{T}"/> registers) until <paramref name="task"/> is done.</summary>
    private static void Finish(IoLoop? loop, ValueTask task)
    {
        while (!task.IsCompleted)
        {
            loop!.RunOnce();
        }

        task.GetAwaiter().GetResult();
    }

    private static long AllocatedBytes(string path)
    {
        using ImageFile file = ImageFile.Open(path, readOnly: true, direct: false);
        return file.Status.AllocatedBytes;
    }
}
