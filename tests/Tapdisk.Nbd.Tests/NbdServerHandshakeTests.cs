using System.Buffers.Binary;
using System.Text;
using Tapdisk.Testing;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

public sealed class NbdServerHandshakeTests
{
    private const long Size = 1024 * 1024;

    [Fact]
    public async Task Go_DefaultName_SendsExportInfoAndBlockSizes()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, InfoPayload("", 1, 2, 3));
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptGo);

        Assert.Equal(RepAck, replies[^1].Type);
        var infos = replies.Where(r => r.Type == RepInfo).ToDictionary(r => BinaryPrimitives.ReadUInt16BigEndian(r.Data), r => r.Data);
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(infos[0].AsSpan(2)));
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(infos[0].AsSpan(10));
        Assert.Equal(1, flags & 1);
        Assert.Equal(0, flags & 2);
        Assert.Equal("tapdisk_client", Encoding.UTF8.GetString(infos[1].AsSpan(2)));
        Assert.Equal("test export", Encoding.UTF8.GetString(infos[2].AsSpan(2)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(2)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(6)));
        Assert.Equal(32u * 1024 * 1024, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(10)));

        // Transmission has started: a flush gets a simple reply.
        await client.SendRequestAsync(CmdFlush, 7, 0, 0);
        Assert.Equal((0u, 7ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Info_ThenGo_StaysInNegotiationUntilGo()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptInfo, InfoPayload("anything"));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptInfo))[^1].Type);
        await client.SendOptionAsync(OptGo, InfoPayload("anything"));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);
    }

    [Fact]
    public async Task ExportName_NoZeroes_RepliesSizeAndFlagsOnly()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size, readOnly: true));
        await client.GreetAsync(clientFlags: 3);
        await client.SendOptionAsync(OptExportName, "tapdisk_client"u8);
        byte[] reply = await client.ReadExactAsync(10);
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(2, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)) & 2);
        await client.SendRequestAsync(CmdFlush, 1, 0, 0);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task ExportName_WithoutNoZeroes_Pads124Zeros()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync(clientFlags: 1);
        await client.SendOptionAsync(OptExportName, []);
        byte[] reply = await client.ReadExactAsync(10 + 124);
        Assert.All(reply[10..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task ExportName_UnknownNameWithSeveralExports_ClosesConnection()
    {
        var server = new NbdServer([new NbdExport("a", "", new MemoryImage(Size)), new NbdExport("b", "", new MemoryImage(Size))]);
        await using var client = new NbdTestClient(server);
        await client.GreetAsync();
        await client.SendOptionAsync(OptExportName, "c"u8);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Go_UnknownNameWithSeveralExports_RepliesErrUnknown()
    {
        var server = new NbdServer([new NbdExport("a", "", new MemoryImage(Size)), new NbdExport("b", "", new MemoryImage(2 * Size))]);
        await using var client = new NbdTestClient(server);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, InfoPayload("c"));
        Assert.Equal(RepErrUnknown, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, InfoPayload("b"));
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptGo);
        Assert.Equal((ulong)(2 * Size), BinaryPrimitives.ReadUInt64BigEndian(replies[0].Data.AsSpan(2)));
    }

    [Fact]
    public async Task List_SeveralExports_SendsServerRepliesThenAck()
    {
        var server = new NbdServer([new NbdExport("a", "first", new MemoryImage(Size)), new NbdExport("bb", "second", new MemoryImage(Size))]);
        await using var client = new NbdTestClient(server);
        await client.GreetAsync();
        await client.SendOptionAsync(OptList, []);
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptList);
        Assert.Equal([RepServer, RepServer, RepAck], replies.Select(r => r.Type));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(replies[0].Data));
        Assert.Equal("afirst", Encoding.UTF8.GetString(replies[0].Data.AsSpan(4)));
        Assert.Equal("bb", Encoding.UTF8.GetString(replies[1].Data.AsSpan(4, 2)));
    }

    [Fact]
    public async Task List_WithPayload_RepliesInvalidAndStaysInSync()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptList, "junk"u8);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptList, []);
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptList))[^1].Type);
    }

    [Fact]
    public async Task Abort_RepliesAckAndCloses()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptAbort, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task StartTls_RepliesUnsupported()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStartTls, []);
        Assert.Equal(RepErrUnsup, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptStartTls, "x"u8);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
    }

    [Theory]
    [InlineData(12u, 0)]
    [InlineData(12u, 8)]
    [InlineData(4u, 3)]
    [InlineData(0xDEADBEEFu, 1000)]
    public async Task UnknownOption_WithPayload_RepliesUnsupportedAndSkipsPayload(uint option, int payloadLength)
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        byte[] payload = new byte[payloadLength];
        Array.Fill(payload, (byte)0x49); // 'I': looks like the start of IHAVEOPT if parsed as a header.
        await client.SendOptionAsync(option, payload);
        (uint opt, uint type, _) = await client.ReadOptionReplyAsync();
        Assert.Equal(option, opt);
        Assert.Equal(RepErrUnsup, type);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);
    }

    [Fact]
    public async Task Option_OversizePayload_RepliesTooBigAndStaysInSync()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptInfo, new byte[100 * 1024]);
        Assert.Equal(RepErrTooBig, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);
    }

    [Fact]
    public async Task Option_HugeDeclaredLength_RepliesTooBigAndCloses()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, 0xFFFFFFF0u, []);
        Assert.Equal(RepErrTooBig, (await client.ReadOptionReplyAsync()).Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Option_BadMagic_ClosesConnection()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        byte[] header = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(header, 0x1122334455667788);
        await client.SendAsync(header);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task ClientFlags_UnknownBits_ClosesConnection()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync(clientFlags: 0x80000003);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 9, 1, 2 })] // name length beyond the option
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 5, 0, 1 })] // five info requests declared, one sent
    [InlineData(new byte[] { 0, 0 })] // truncated
    public async Task Go_MalformedPayload_RepliesInvalidAndStaysInSync(byte[] payload)
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, payload);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);
    }

    [Fact]
    public async Task StructuredReply_WithPayload_RepliesInvalid()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, "x"u8);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task SetMetaContext_WithoutStructuredReplies_RepliesInvalid()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "base:allocation"));
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task ListMetaContext_NoQueries_ListsBaseAllocationAndAllocationDepth()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptListMetaContext, MetaContextPayload(""));
        List<(uint Type, byte[] Data)> replies = await client.ReadOptionRepliesAsync(OptListMetaContext);
        Assert.Equal([RepMetaContext, RepMetaContext, RepAck], replies.Select(r => r.Type));
        Assert.Equal(["base:allocation", "qemu:allocation-depth"], replies.Take(2).Select(r => Encoding.ASCII.GetString(r.Data.AsSpan(4))));
    }

    [Fact]
    public async Task SetMetaContext_UnknownContext_RepliesAckOnly()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        await client.ReadOptionReplyAsync();
        await client.SendOptionAsync(OptSetMetaContext, MetaContextPayload("", "qemu:dirty-bitmap:x", "base:"));
        Assert.Equal([RepAck], (await client.ReadOptionRepliesAsync(OptSetMetaContext)).Select(r => r.Type));
    }

    [Fact]
    public async Task SetMetaContext_QueryLengthPastEnd_RepliesInvalid()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        await client.ReadOptionReplyAsync();
        byte[] payload = MetaContextPayload("", "base:allocation");
        BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(8), 1000);
        await client.SendOptionAsync(OptSetMetaContext, payload);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Handshake_ClientVanishes_ServerFinishes()
    {
        NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendAsync(new byte[] { 0x49, 0x48 });
        await client.CloseSendAsync();
        await client.WaitServerAsync();
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Flags_ReadOnlyImage_AdvertisesReadOnlyWithoutWriteFeatures()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size, readOnly: true));
        await client.NegotiateAsync();
        ushort flags = client.TransmissionFlags;
        Assert.NotEqual(0, flags & 2); // READ_ONLY
        Assert.Equal(0, flags & ((1 << 3) | (1 << 5) | (1 << 6) | (1 << 11))); // FUA, TRIM, WRITE_ZEROES, FAST_ZERO
        Assert.NotEqual(0, flags & (1 << 2)); // FLUSH
        Assert.NotEqual(0, flags & (1 << 8)); // MULTI_CONN
    }

    [Fact]
    public async Task Flags_WritableImage_AdvertisesCapabilities()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.NegotiateAsync();
        int expected = 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
        Assert.Equal(expected, client.TransmissionFlags);
    }
}
