using System.Buffers.Binary;
using System.Text;
using Tapdisk.Storage;
using Tapdisk.Testing;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

/// <summary>qemu:dirty-bitmap:&lt;name&gt; from a change tracker in the stack (the CBT log), next to base:allocation.</summary>
public sealed class NbdServerDirtyBitmapTests
{
    private const long Size = 1024 * 1024;
    private const int Unit = 65536;

    [Fact]
    public async Task ListMetaContext_QemuNamespace_ListsTheTrackersBitmap()
    {
        await using NbdTestClient client = Connect(new TrackingFilter(new MemoryImage(Size)));
        await client.GreetAsync();
        await client.SendOptionAsync(OptListMetaContext, MetaContextPayload("", "qemu:"));
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptListMetaContext);
        Assert.Equal([RepMetaContext, RepMetaContext, RepAck], replies.Select(r => r.Type));
        Assert.Equal(["qemu:dirty-bitmap:test", "qemu:allocation-depth"], replies.Take(2).Select(r => Encoding.ASCII.GetString(r.Data.AsSpan(4))));
    }

    [Fact]
    public async Task ListMetaContext_NoTracker_ListsOnlyBaseAllocation()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptListMetaContext, MetaContextPayload("", "qemu:dirty-bitmap:", "base:"));
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptListMetaContext);
        Assert.Equal([RepMetaContext, RepAck], replies.Select(r => r.Type));
        Assert.Equal("base:allocation", Encoding.ASCII.GetString(replies[0].Data.AsSpan(4)));
    }

    [Fact]
    public async Task BlockStatus_BothContexts_AllocationChunkThenDirtyRunsDone()
    {
        await using NbdTestClient client = Connect(new TrackingFilter(new MemoryImage(Size)));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "base:allocation", "qemu:dirty-bitmap:test"));
        List<(uint Type, byte[] Data)> set = await client.ReadOptionRepliesAsync(OptSetMetaContext);
        Assert.Equal([RepMetaContext, RepMetaContext, RepAck], set.Select(r => r.Type));
        uint dirtyId = BinaryPrimitives.ReadUInt32BigEndian(set[1].Data);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);

        // Units 2 and 3 (a write straddling their boundary), then a status of units 0..5.
        await client.SendRequestAsync(CmdWrite, 1, (3 * Unit) - 512, 1024, payload: new byte[1024]);
        Assert.Equal(0u, (await client.ReadSimpleReplyAsync()).Error);
        await client.SendRequestAsync(CmdBlockStatus, 2, 0, 6 * Unit);

        (ushort flags, ushort type, ulong handle, byte[] allocation) = await client.ReadChunkAsync();
        Assert.Equal((0, 5, 2UL), (flags & 1, type, handle));
        Assert.NotEqual(dirtyId, BinaryPrimitives.ReadUInt32BigEndian(allocation));

        (flags, type, handle, byte[] dirty) = await client.ReadChunkAsync();
        Assert.Equal((1, 5, 2UL), (flags & 1, type, handle));
        Assert.Equal(dirtyId, BinaryPrimitives.ReadUInt32BigEndian(dirty));
        Assert.Equal([(2u * Unit, 0u), (2u * Unit, 1u), (2u * Unit, 0u)], Descriptors(dirty));
    }

    [Fact]
    public async Task BlockStatus_TrackerDroppedByResume_EverythingDirty()
    {
        // A plain unpause drops the log under a connected client: it must copy too much, never too little.
        var export = new NbdExport("tapdisk_client", "test export", new TrackingFilter(new MemoryImage(Size)));
        await using var client = new NbdTestClient(new NbdServer(export));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "qemu:dirty-bitmap:test"));
        Assert.Equal([RepMetaContext, RepAck], (await client.ReadOptionRepliesAsync(OptSetMetaContext)).Select(r => r.Type));
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);

        await export.Backend.PauseAsync();
        await export.Backend.CloseImageAsync();
        export.Backend.Resume(new MemoryImage(Size));
        await client.SendRequestAsync(CmdBlockStatus, 3, 0, 4 * Unit);
        (ushort flags, _, ulong handle, byte[] dirty) = await client.ReadChunkAsync();
        Assert.Equal((1, 3UL), (flags & 1, handle));
        Assert.Equal([(4u * Unit, 1u)], Descriptors(dirty));
    }

    [Fact]
    public async Task BlockStatus_AllocationDepth_LeafThenParentThenAbsent()
    {
        // A leaf holding unit 1 over a parent holding units 0 and 1 and 3: depths 2, 1, 0, 2, 0.
        var parent = new LayerImage(new MemoryImage(5 * Unit), parent: null, [0, 1, 3]);
        await using NbdTestClient client = Connect(new TrackingFilter(new LayerImage(new MemoryImage(5 * Unit), parent, [1])));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "qemu:allocation-depth"));
        List<(uint Type, byte[] Data)> set = await client.ReadOptionRepliesAsync(OptSetMetaContext);
        Assert.Equal([RepMetaContext, RepAck], set.Select(r => r.Type));
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);

        await client.SendRequestAsync(CmdBlockStatus, 7, 0, 5 * Unit);
        (ushort flags, ushort type, ulong handle, byte[] depth) = await client.ReadChunkAsync();
        Assert.Equal((1, 5, 7UL), (flags & 1, type, handle));
        Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(set[0].Data), BinaryPrimitives.ReadUInt32BigEndian(depth));
        Assert.Equal([((uint)Unit, 2u), ((uint)Unit, 1u), ((uint)Unit, 0u), ((uint)Unit, 2u), ((uint)Unit, 0u)], Descriptors(depth));
    }

    [Fact]
    public async Task BlockStatus_ExtendedHeaders_EveryContextAnswersWithBlockStatusExt()
    {
        // All three contexts over a chain with a tracker: each chunk is BLOCK_STATUS_EXT (type 6) with 64-bit
        // descriptors and a descriptor count; only the last carries DONE.
        var parent = new LayerImage(new MemoryImage(5 * Unit), parent: null, [0, 1, 3]);
        await using NbdTestClient client = Connect(new TrackingFilter(new LayerImage(new MemoryImage(5 * Unit), parent, [1])));
        await client.GreetAsync();
        await client.SendOptionAsync(OptExtendedHeaders, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "base:allocation", "qemu:dirty-bitmap:test", "qemu:allocation-depth"));
        List<(uint Type, byte[] Data)> set = await client.ReadOptionRepliesAsync(OptSetMetaContext);
        Assert.Equal([RepMetaContext, RepMetaContext, RepMetaContext, RepAck], set.Select(r => r.Type));
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);

        await client.SendExtendedRequestAsync(CmdWrite, 1, Unit, 512, payload: new byte[512]);
        Assert.Equal(0, (await client.ReadExtendedChunkAsync()).Type);
        await client.SendExtendedRequestAsync(CmdBlockStatus, 2, 0, 5 * Unit);
        var chunks = new List<(ushort Flags, ushort Type, ulong Handle, ulong Offset, byte[] Payload)>();
        for (int i = 0; i < 3; i++)
        {
            chunks.Add(await client.ReadExtendedChunkAsync());
        }

        Assert.Equal([(0, 6, 2UL, 0UL), (0, 6, 2UL, 0UL), (1, 6, 2UL, 0UL)], chunks.Select(c => (c.Flags & 1, (int)c.Type, c.Handle, c.Offset)));
        Assert.Equal(set.Take(3).Select(r => BinaryPrimitives.ReadUInt32BigEndian(r.Data)), chunks.Select(c => BinaryPrimitives.ReadUInt32BigEndian(c.Payload)));
        Assert.Equal([(Unit, 3UL), (Unit, 0UL), (3UL * Unit, 3UL)], DescriptorsExt(chunks[0].Payload)); // holes read as zeros around unit 1
        Assert.Equal([(Unit, 0UL), (Unit, 1UL), (3UL * Unit, 0UL)], DescriptorsExt(chunks[1].Payload)); // dirty: unit 1
        Assert.Equal([(Unit, 2UL), (Unit, 1UL), (Unit, 0UL), (Unit, 2UL), (Unit, 0UL)], DescriptorsExt(chunks[2].Payload));
    }

    private static List<(ulong Length, ulong Flags)> DescriptorsExt(byte[] payload)
    {
        int count = (int)BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4));
        Assert.Equal(8 + (16 * count), payload.Length);
        var list = new List<(ulong, ulong)>();
        for (int i = 8; i < payload.Length; i += 16)
        {
            list.Add((BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(i + 8))));
        }

        return list;
    }

    private static List<(uint Length, uint Flags)> Descriptors(byte[] payload)
    {
        var list = new List<(uint, uint)>();
        for (int i = 4; i + 8 <= payload.Length; i += 8)
        {
            list.Add((BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 4))));
        }

        return list;
    }

    /// <summary>A format layer in memory holding only the listed 64 KiB units itself, over an optional parent.</summary>
    private sealed class LayerImage(IBlockImage data, IBlockImage? parent, int[] ownUnits) : IBlockImage
    {
        public string DriverName => "test-layer";

        public string Path => "layer";

        public long SizeBytes => data.SizeBytes;

        public bool IsReadOnly => data.IsReadOnly;

        public ImageCapabilities Capabilities => data.Capabilities;

        public IoLimits Limits => data.Limits;

        public IBlockImage? Parent => parent;

        public bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => false;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) => data.ReadAsync(offsetBytes, destination, cancellationToken);

        public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) => data.WriteAsync(offsetBytes, source, flags, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => data.FlushAsync(cancellationToken);

        public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) => data.TrimAsync(offsetBytes, lengthBytes, cancellationToken);

        public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) => data.ZeroAsync(offsetBytes, lengthBytes, flags, cancellationToken);

        public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default) => data.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);

        public ValueTask GetOwnAllocationAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
        {
            for (long unit = offsetBytes / Unit; unit * Unit < offsetBytes + lengthBytes; unit++)
            {
                long from = Math.Max(offsetBytes, unit * Unit);
                long to = Math.Min(offsetBytes + lengthBytes, (unit + 1) * Unit);
                extents.Add(from, to - from, Array.IndexOf(ownUnits, (int)unit) >= 0 ? ExtentFlags.Data : ExtentFlags.Hole);
            }

            return ValueTask.CompletedTask;
        }

        public void Dispose() => data.Dispose();

        public ValueTask DisposeAsync() => data.DisposeAsync();
    }

    /// <summary>A change tracker in memory: marks the 64 KiB units writes touch, like the CBT log.</summary>
    private sealed class TrackingFilter(IBlockImage next) : BlockFilter(next), IChangeTracker
    {
        private readonly bool[] _marked = new bool[(next.SizeBytes + Unit - 1) / Unit];

        public override string DriverName => "test-tracker";

        public string BitmapName => "test";

        public int UnitBytes => Unit;

        public bool IsMarked(long unit) => Volatile.Read(ref _marked[unit]);

        public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        {
            for (long u = offsetBytes / Unit; u <= (offsetBytes + source.Length - 1) / Unit; u++)
            {
                Volatile.Write(ref _marked[u], true);
            }

            return Next.WriteAsync(offsetBytes, source, flags, cancellationToken);
        }
    }
}
