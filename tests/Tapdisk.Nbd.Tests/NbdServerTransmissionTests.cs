using System.Buffers.Binary;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

public sealed class NbdServerTransmissionTests
{
    private const long Size = 1024 * 1024;
    private const ushort ChunkOffsetData = 1, ChunkOffsetHole = 2, ChunkBlockStatus = 5, ChunkError = 0x8001, ChunkNone = 0;

    private static byte[] Pattern(int length, byte seed) => [.. Enumerable.Range(0, length).Select(i => (byte)(seed + (i * 7)))];

    private static List<(uint Length, uint Flags)> Extents(byte[] payload)
    {
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        var list = new List<(uint, uint)>();
        for (int i = 4; i < payload.Length; i += 8)
        {
            list.Add((BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 4))));
        }

        return list;
    }

    private static async Task<NbdTestClient> ConnectedAsync(IBlockImage image, bool structured = true, NbdServerOptions? options = null)
    {
        NbdTestClient client = Connect(image, options);
        await client.NegotiateAsync(structured);
        return client;
    }

    [Fact]
    public async Task Read_Structured_RepliesOneOffsetDataChunk()
    {
        var image = new MemoryImage(Size);
        byte[] data = Pattern(8192, 3);
        await image.WriteAsync(4096, data);
        await using NbdTestClient client = await ConnectedAsync(image);

        await client.SendRequestAsync(CmdRead, 0x1122334455667788, 4096, 8192, FlagDf);
        (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal(1, flags);
        Assert.Equal(ChunkOffsetData, type);
        Assert.Equal(0x1122334455667788ul, handle);
        Assert.Equal(4096ul, BinaryPrimitives.ReadUInt64BigEndian(payload));
        Assert.Equal(data, payload[8..]);
    }

    [Fact]
    public async Task Read_Structured_SparseRange_SendsHoleChunksForZeroRuns()
    {
        var image = new MemoryImage(Size);
        byte[] data = Pattern(65536, 5);
        await image.WriteAsync(131072, data);
        await using NbdTestClient client = await ConnectedAsync(image);

        await client.SendRequestAsync(CmdRead, 7, 65536, 262144);
        var chunks = new List<(ushort Flags, ushort Type, byte[] Payload)>();
        while (true)
        {
            (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
            Assert.Equal(7ul, handle);
            chunks.Add((flags, type, payload));
            if ((flags & 1) != 0)
            {
                break;
            }
        }

        Assert.Equal([ChunkOffsetHole, ChunkOffsetData, ChunkOffsetHole], chunks.Select(c => c.Type));
        Assert.Equal(65536ul, BinaryPrimitives.ReadUInt64BigEndian(chunks[0].Payload));
        Assert.Equal(65536u, BinaryPrimitives.ReadUInt32BigEndian(chunks[0].Payload.AsSpan(8)));
        Assert.Equal(131072ul, BinaryPrimitives.ReadUInt64BigEndian(chunks[1].Payload));
        Assert.Equal(data, chunks[1].Payload[8..]);
        Assert.Equal(196608ul, BinaryPrimitives.ReadUInt64BigEndian(chunks[2].Payload));
        Assert.Equal(131072u, BinaryPrimitives.ReadUInt32BigEndian(chunks[2].Payload.AsSpan(8)));
    }

    [Fact]
    public async Task Read_Structured_AllZeroRange_SendsOneHoleChunk()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdRead, 8, 0, 524288);
        (ushort flags, ushort type, _, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal(1, flags);
        Assert.Equal(ChunkOffsetHole, type);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64BigEndian(payload));
        Assert.Equal(524288u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8)));
    }

    [Fact]
    public async Task Read_Structured_BelowSparseThreshold_SendsData()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size), options: new NbdServerOptions { SparseReadMinBytes = 1024 * 1024 });
        await client.SendRequestAsync(CmdRead, 9, 0, 524288);
        (ushort flags, ushort type, _, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal(1, flags);
        Assert.Equal(ChunkOffsetData, type);
        Assert.Equal(new byte[524288], payload[8..]);
    }

    [Fact]
    public async Task Read_Simple_SparseRange_SendsZeros()
    {
        var image = new MemoryImage(Size);
        byte[] data = Pattern(4096, 1);
        await image.WriteAsync(131072, data);
        await using NbdTestClient client = await ConnectedAsync(image, structured: false);
        await client.SendRequestAsync(CmdRead, 10, 65536, 262144);
        Assert.Equal((0u, 10ul), await client.ReadSimpleReplyAsync());
        byte[] got = await client.ReadExactAsync(262144);
        byte[] expected = new byte[262144];
        data.CopyTo(expected, 65536);
        Assert.Equal(expected, got);
    }

    [Fact]
    public async Task WriteThenRead_SimpleReplies_RoundTrips()
    {
        var image = new MemoryImage(Size);
        await using NbdTestClient client = await ConnectedAsync(image, structured: false);
        byte[] data = Pattern(65536, 9);

        await client.SendRequestAsync(CmdWrite, 1, 65536, 65536, FlagFua, data);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdRead, 2, 65536, 65536);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());
        Assert.Equal(data, await client.ReadExactAsync(65536));
    }

    [Fact]
    public async Task Flush_CallsImageFlush()
    {
        var image = new MemoryImage(Size);
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdFlush, 5, 0, 0);
        Assert.Equal((0u, 5ul), await client.ReadSimpleReplyAsync());
        Assert.Equal(1, image.FlushCount);
    }

    [Fact]
    public async Task Read_PastEnd_Structured_RepliesEinvalErrorChunk()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdRead, 3, Size - 512, 1024);
        (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal((1, ChunkError, 3ul), (flags, type, handle));
        Assert.Equal(22u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4)));
    }

    [Fact]
    public async Task Read_PastEnd_Simple_RepliesEinvalWithoutData()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size), structured: false);
        await client.SendRequestAsync(CmdRead, 3, ulong.MaxValue - 10, 4096);
        Assert.Equal((22u, 3ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdFlush, 4, 0, 0);
        Assert.Equal((0u, 4ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Write_PastEnd_RepliesEnospcAndConsumesPayload()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdWrite, 1, Size - 100, 4096, 0, new byte[4096]);
        Assert.Equal((28u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdFlush, 2, 0, 0);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Write_ReadOnlyImage_RepliesEpermAndConsumesPayload()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size, readOnly: true));
        await client.SendRequestAsync(CmdWrite, 1, 0, 512, 0, Pattern(512, 1));
        Assert.Equal((1u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdWriteZeroes, 2, 0, 512);
        Assert.Equal((1u, 2ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdTrim, 3, 0, 512);
        Assert.Equal((1u, 3ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Write_LargerThanMaximum_RepliesEinvalAndStaysInSync()
    {
        var options = new NbdServerOptions { MaxRequestBytes = 64 * 1024 };
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size), options: options);
        await client.SendRequestAsync(CmdWrite, 1, 0, 128 * 1024, 0, Pattern(128 * 1024, 0x25));
        Assert.Equal((22u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdRead, 2, 0, 128 * 1024);
        (_, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal((ChunkError, 2ul), (type, handle));
        Assert.Equal(22u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        await client.SendRequestAsync(CmdFlush, 3, 0, 0);
        Assert.Equal((0u, 3ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task ZeroLength_ReadWriteTrimCache_Succeed_BlockStatusFails()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdRead, 1, 0, 0);
        (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal((1, ChunkNone, 1ul, 0), (flags, type, handle, payload.Length));
        await client.SendRequestAsync(CmdWrite, 2, 0, 0);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdTrim, 3, 0, 0);
        Assert.Equal((0u, 3ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdCache, 4, 0, 0);
        Assert.Equal((0u, 4ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdBlockStatus, 5, 0, 0);
        (_, type, handle, payload) = await client.ReadChunkAsync();
        Assert.Equal((ChunkError, 5ul, 22u), (type, handle, BinaryPrimitives.ReadUInt32BigEndian(payload)));
    }

    [Fact]
    public async Task Cache_ValidRange_Succeeds_PastEndFails()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdCache, 1, 0, 65536);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdCache, 2, Size, 1);
        Assert.Equal((22u, 2ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task BlockStatus_AfterWriteAndTrim_ReportsDataAndHoles()
    {
        var image = new MemoryImage(Size);
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdWrite, 1, 0, 3 * 65536, 0, Pattern(3 * 65536, 1));
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdTrim, 2, 65536, 65536);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());

        await client.SendRequestAsync(CmdBlockStatus, 3, 0, (uint)Size);
        (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal((1, ChunkBlockStatus, 3ul), (flags, type, handle));
        Assert.Equal([(65536u, 0u), (65536u, 3u), (65536u, 0u), ((uint)Size - (3 * 65536), 3u)], Extents(payload));

        await client.SendRequestAsync(CmdBlockStatus, 4, 1000, 200_000, FlagReqOne);
        (_, _, _, payload) = await client.ReadChunkAsync();
        Assert.Equal([(65536u - 1000, 0u)], Extents(payload));
    }

    [Fact]
    public async Task BlockStatus_WithoutMetaContext_RepliesEinval()
    {
        NbdTestClient client = Connect(new MemoryImage(Size));
        await using (client)
        {
            await client.NegotiateAsync(structured: true, baseAllocation: false);
            await client.SendRequestAsync(CmdBlockStatus, 1, 0, 4096);
            (_, ushort type, _, byte[] payload) = await client.ReadChunkAsync();
            Assert.Equal(ChunkError, type);
            Assert.Equal(22u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        }

        await using NbdTestClient simple = await ConnectedAsync(new MemoryImage(Size), structured: false);
        await simple.SendRequestAsync(CmdBlockStatus, 2, 0, 4096);
        Assert.Equal((22u, 2ul), await simple.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task WriteZeroes_NoHole_KeepsAllocation_WithoutNoHole_Punches()
    {
        var image = new MemoryImage(Size);
        await image.WriteAsync(0, Pattern(2 * 65536, 5));
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdWriteZeroes, 1, 0, 65536, FlagNoHole);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdWriteZeroes, 2, 65536, 65536, FlagFua | FlagFastZero);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());

        await client.SendRequestAsync(CmdBlockStatus, 3, 0, 2 * 65536);
        (_, _, _, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal([(65536u, 0u), (65536u, 3u)], Extents(payload));
        byte[] back = new byte[2 * 65536];
        await image.ReadAsync(0, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task WriteZeroes_FastZeroUnsupported_RepliesEnotsup()
    {
        var caps = ImageCapabilities.Write | ImageCapabilities.Zero | ImageCapabilities.Flush | ImageCapabilities.Extents;
        await using NbdTestClient client = await ConnectedAsync(new HookedImage(Size, capabilities: caps));
        Assert.Equal(0, client.TransmissionFlags & (1 << 11));
        await client.SendRequestAsync(CmdWriteZeroes, 1, 0, 4096, FlagFastZero);
        Assert.Equal((95u, 1ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdTrim, 2, 0, 4096);
        Assert.Equal((22u, 2ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task UnknownCommand_RepliesEinval()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(42, 9, 0, 0);
        Assert.Equal((22u, 9ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Request_BadMagic_ClosesConnection()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendAsync(Request(0, CmdRead, 1, 0, 512, magic: 0x12345678));
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task DriverErrors_MapToNbdCodes()
    {
        var image = new HookedImage(Size)
        {
            BeforeOperation = (op, offset) => op switch
            {
                "read" => throw new ErrnoIOException(Errno.EIO, "x", "read"),
                "write" => throw new ErrnoIOException(Errno.ENOSPC, "x", "write"),
                "flush" => throw new ErrnoIOException(Errno.EROFS, "x", "flush"),
                "zero" => throw new ErrnoIOException(Errno.EOPNOTSUPP, "x", "zero"),
                _ => Task.CompletedTask,
            },
        };
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdRead, 1, 0, 512);
        (_, ushort type, _, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal((ChunkError, 5u), (type, BinaryPrimitives.ReadUInt32BigEndian(payload)));
        await client.SendRequestAsync(CmdWrite, 2, 0, 512, 0, new byte[512]);
        Assert.Equal((28u, 2ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdFlush, 3, 0, 0);
        Assert.Equal((1u, 3ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdWriteZeroes, 4, 0, 512);
        Assert.Equal((95u, 4ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Unaligned_WriteReadZeroStatus_ServedWithAlignedDriverCalls()
    {
        var image = new HookedImage(Size, minimumBlockBytes: 512);
        await using NbdTestClient client = await ConnectedAsync(image);
        byte[] background = Pattern(8192, 1);
        await client.SendRequestAsync(CmdWrite, 1, 0, 8192, 0, background);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());

        byte[] data = Pattern(3000, 100);
        await client.SendRequestAsync(CmdWrite, 2, 1000, 3000, FlagFua, data);
        Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdWrite, 3, 5000, 10, 0, Pattern(10, 200));
        Assert.Equal((0u, 3ul), await client.ReadSimpleReplyAsync());
        await client.SendRequestAsync(CmdWriteZeroes, 4, 6001, 1500);
        Assert.Equal((0u, 4ul), await client.ReadSimpleReplyAsync());

        byte[] expected = [.. background];
        data.CopyTo(expected, 1000);
        Pattern(10, 200).CopyTo(expected, 5000);
        expected.AsSpan(6001, 1500).Clear();

        await client.SendRequestAsync(CmdRead, 5, 700, 7000);
        (_, ushort type, _, byte[] payload) = await client.ReadChunkAsync();
        Assert.Equal(ChunkOffsetData, type);
        Assert.Equal(expected[700..7700], payload[8..]);

        await client.SendRequestAsync(CmdBlockStatus, 6, 100, 300);
        (_, _, _, payload) = await client.ReadChunkAsync();
        Assert.Equal(300u, Extents(payload)[0].Length);
        Assert.Equal(0, image.UnalignedCalls);
    }

    [Fact]
    public async Task Pipelining_SlowFirstRequest_RepliesOutOfOrder()
    {
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var image = new HookedImage(Size) { BeforeOperation = (op, offset) => op == "read" && offset == 0 ? releaseFirst.Task : Task.CompletedTask };
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdRead, 1, 0, 4096);
        await client.SendRequestAsync(CmdRead, 2, 8192, 4096);
        (_, _, ulong first, _) = await client.ReadChunkAsync();
        Assert.Equal(2ul, first);
        releaseFirst.SetResult();
        (_, _, ulong second, _) = await client.ReadChunkAsync();
        Assert.Equal(1ul, second);
    }

    [Fact]
    public async Task Pipelining_TwoRequests_RunConcurrentlyOnThePool()
    {
        // Each read waits until both are inside the image: this completes only if they run at the same time.
        using var barrier = new Barrier(2);
        var image = new HookedImage(Size)
        {
            BeforeOperation = (op, offset) =>
            {
                Assert.True(barrier.SignalAndWait(NbdTestClient.Timeout), "requests were not dispatched concurrently");
                return Task.CompletedTask;
            },
        };
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdRead, 1, 0, 4096);
        await client.SendRequestAsync(CmdRead, 2, 4096, 4096);
        var handles = new HashSet<ulong> { (await client.ReadChunkAsync()).Handle, (await client.ReadChunkAsync()).Handle };
        Assert.Equal([1ul, 2ul], handles.Order());
    }

    [Fact]
    public async Task Pipelining_ManyRequests_BoundedByMaxInFlight()
    {
        var image = new HookedImage(Size) { BeforeOperation = (_, _) => Task.Delay(1) };
        var options = new NbdServerOptions { MaxInFlightPerConnection = 3 };
        await using NbdTestClient client = await ConnectedAsync(image, options: options);
        byte[] batch = [.. Enumerable.Range(0, 50).SelectMany(i => Request(0, CmdRead, (ulong)i, (ulong)i * 4096, 4096))];
        await client.SendAsync(batch);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 50; i++)
        {
            (_, _, ulong handle, byte[] payload) = await client.ReadChunkAsync();
            Assert.Equal(8 + 4096, payload.Length);
            seen.Add(handle);
        }

        Assert.Equal(50, seen.Count);
        Assert.InRange(image.MaxConcurrency, 1, 3);
    }

    [Fact]
    public async Task Pipelining_ManyRequests_BoundedByBufferedBytes_AndALargerRequestStillRuns()
    {
        // 64 KiB of payload per connection: four 16 KiB reads at once, and a 128 KiB read alone.
        var image = new HookedImage(Size) { BeforeOperation = (_, _) => Task.Delay(1) };
        var options = new NbdServerOptions { MaxBufferedBytesPerConnection = 64 * 1024 };
        await using NbdTestClient client = await ConnectedAsync(image, options: options);
        byte[] batch = [.. Enumerable.Range(0, 50).SelectMany(i => Request(0, CmdRead, (ulong)i, (ulong)i * 16384, 16384))];
        await client.SendAsync(batch);
        await client.SendRequestAsync(CmdRead, 50, 0, 131072, FlagDf);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 51; i++)
        {
            // One chunk each (DF for the large one: the image reads as zeros, so it is one OFFSET_HOLE).
            (ushort flags, ushort type, ulong handle, byte[] payload) = await client.ReadChunkAsync();
            Assert.Equal(1, flags & 1);
            Assert.Equal(handle == 50 ? (ChunkOffsetHole, 12) : (ChunkOffsetData, 8 + 16384), (type, payload.Length));
            seen.Add(handle);
        }

        Assert.Equal(51, seen.Count);
        Assert.InRange(image.MaxConcurrency, 1, 4);
    }

    [Fact]
    public async Task Disc_WithRequestInFlight_RepliesThenCloses()
    {
        var gate = new OperationGate();
        HookedImage image = gate.Image(Size);
        await using NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdWrite, 1, 0, 512, 0, new byte[512]);
        await client.SendRequestAsync(CmdDisc, 2, 0, 0);
        await gate.Entered.WaitAsync(NbdTestClient.Timeout);
        gate.Release();
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        Assert.True(await client.IsClosedByServerAsync());
        await client.WaitServerAsync();
    }

    [Fact]
    public async Task ClientVanishes_MidWritePayload_ServerFinishes()
    {
        var image = new MemoryImage(Size);
        NbdTestClient client = await ConnectedAsync(image);
        await client.SendAsync((byte[])[.. Request(0, CmdWrite, 1, 0, 4096), .. new byte[1000]]);
        await client.CloseSendAsync();
        await client.WaitServerAsync();
        await client.DisposeAsync();
    }

    [Fact]
    public async Task ClientVanishes_WithRequestInFlight_ServerFinishesAfterImage()
    {
        var gate = new OperationGate();
        HookedImage image = gate.Image(Size);
        NbdTestClient client = await ConnectedAsync(image);
        await client.SendRequestAsync(CmdRead, 1, 0, 4096);
        await gate.Entered.WaitAsync(NbdTestClient.Timeout);
        await client.CloseSendAsync();
        gate.Release();
        await client.WaitServerAsync();
        await client.DisposeAsync();
    }

    [Fact]
    public async Task HalfHeader_ThenClose_ServerFinishes()
    {
        NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendAsync(Request(0, CmdRead, 1, 0, 4096).AsMemory(0, 13));
        await client.CloseSendAsync();
        await client.WaitServerAsync();
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Reset_MidWritePayload_ServerFinishes()
    {
        NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendAsync((byte[])[.. Request(0, CmdWrite, 1, 0, 4096), .. new byte[100]]);
        await client.ResetSendAsync();
        await client.WaitServerAsync();
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Cancel_WhileRequestWaitsAtPausedExport_ServerFinishes()
    {
        var export = new NbdExport("x", "", new MemoryImage(Size));
        var client = new NbdTestClient(new NbdServer(export));
        await client.NegotiateAsync();
        await export.Backend.PauseAsync();
        await client.SendRequestAsync(CmdWrite, 1, 0, 512, 0, new byte[512]);
        await client.CancelServerAsync();
        await client.WaitServerAsync();
        await client.DisposeAsync();

        // Nothing leaked through the gate: a pause of the still-paused export has nothing to drain.
        await export.Backend.PauseAsync().WaitAsync(NbdTestClient.Timeout);
        export.Backend.Resume();
    }

    [Fact]
    public async Task Handshake_SilentClient_DroppedAfterTimeout()
    {
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(100) };
        await using NbdTestClient client = Connect(new MemoryImage(Size), options);
        await client.ReadExactAsync(18);
        Assert.True(await client.IsClosedByServerAsync());
    }
}
