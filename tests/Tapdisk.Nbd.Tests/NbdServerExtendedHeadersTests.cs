using System.Buffers.Binary;
using Tapdisk.Testing;
using static Tapdisk.Nbd.Tests.NbdTestClient;

namespace Tapdisk.Nbd.Tests;

/// <summary>NBD_OPT_EXTENDED_HEADERS: negotiation, 32-byte requests and replies, 64-bit lengths, hostile headers.</summary>
public sealed class NbdServerExtendedHeadersTests
{
    private const long Size = 1024 * 1024;
    private const long Large = 6L << 30; // over 4 GiB: lengths no compact header can carry
    private const ushort ChunkNone = 0, ChunkOffsetData = 1, ChunkBlockStatusExt = 6, ChunkError = 0x8001;
    private const uint NbdEinval = 22, NbdEnospc = 28;

    private static async Task<NbdTestClient> ConnectedAsync(MemoryImage image, bool baseAllocation = true)
    {
        NbdTestClient client = Connect(image);
        await client.NegotiateExtendedAsync(baseAllocation);
        return client;
    }

    private static List<(ulong Length, ulong Flags)> ExtentsExt(byte[] payload, uint contextId = 1)
    {
        Assert.Equal(contextId, BinaryPrimitives.ReadUInt32BigEndian(payload));
        int count = (int)BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4));
        Assert.Equal(8 + (16 * count), payload.Length);
        var list = new List<(ulong, ulong)>();
        for (int i = 8; i < payload.Length; i += 16)
        {
            list.Add((BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(i)), BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(i + 8))));
        }

        return list;
    }

    [Fact]
    public async Task Negotiate_Acked_StructuredRepliesImpliedAndDfAdvertised()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        Assert.NotEqual(0, client.TransmissionFlags & (1 << 7)); // SEND_DF: only with structured replies
    }

    [Fact]
    public async Task Negotiate_WithPayload_RepliesInvalidAndStaysCompact()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptExtendedHeaders, "xyzw"u8);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);

        // Not negotiated: a compact request gets a compact (simple) reply.
        await client.SendRequestAsync(CmdFlush, 5, 0, 0);
        Assert.Equal((0u, 5ul), await client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Negotiate_Twice_OrStructuredRepliesAfter_RepliesInvalid()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptExtendedHeaders, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptExtendedHeaders, []);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, InfoPayload(""));
        Assert.Equal(RepAck, (await client.ReadOptionRepliesAsync(OptGo))[^1].Type);
        await client.SendExtendedRequestAsync(CmdFlush, 9, 0, 0);
        Assert.Equal(ExtendedReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(await client.ReadExactAsync(32)));
    }

    [Fact]
    public async Task ExportName_AfterExtendedHeaders_Closes()
    {
        await using NbdTestClient client = Connect(new MemoryImage(Size));
        await client.GreetAsync();
        await client.SendOptionAsync(OptExtendedHeaders, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptExportName, "tapdisk_client"u8);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task WriteThenRead_ExtendedChunksEchoCookieAndOffset()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        byte[] data = [.. Enumerable.Range(0, 8192).Select(i => (byte)(i * 13))];
        await client.SendExtendedRequestAsync(CmdWrite, 0xA1, 4096, (ulong)data.Length, payload: data);
        (ushort flags, ushort type, ulong handle, ulong offset, byte[] payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal((1, ChunkNone, 0xA1ul, 4096ul, 0), (flags, type, handle, offset, payload.Length));

        await client.SendExtendedRequestAsync(CmdRead, 0xA2, 4096, (ulong)data.Length);
        (flags, type, handle, offset, payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal((1, ChunkOffsetData, 0xA2ul, 4096ul), (flags, type, handle, offset));
        Assert.Equal(4096ul, BinaryPrimitives.ReadUInt64BigEndian(payload));
        Assert.Equal(data, payload[8..]);
    }

    [Fact]
    public async Task Error_IsAnErrorChunk_NeverASimpleReply()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendExtendedRequestAsync(CmdWriteZeroes, 3, Size, 4096);
        (ushort flags, ushort type, ulong handle, _, byte[] payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal((1, ChunkError, 3ul), (flags, type, handle));
        Assert.Equal(NbdEnospc, BinaryPrimitives.ReadUInt32BigEndian(payload)); // zeroing past the end
    }

    [Fact]
    public async Task ZeroTrimAndBlockStatus_OverFourGiB_InOneRequestEach()
    {
        var image = new MemoryImage(Large);
        await image.WriteAsync(0, new byte[65536].Select(_ => (byte)1).ToArray());
        await image.WriteAsync(Large - 65536, new byte[65536].Select(_ => (byte)2).ToArray());
        await using NbdTestClient client = await ConnectedAsync(image);

        // One map of the whole disk: data, one hole of almost 6 GiB (a length no compact extent can carry), data.
        await client.SendExtendedRequestAsync(CmdBlockStatus, 1, 0, Large);
        (_, ushort type, _, ulong offset, byte[] payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal((ChunkBlockStatusExt, 0ul), (type, offset));
        Assert.Equal([(65536ul, 0ul), ((ulong)Large - 131072, 3ul), (65536ul, 0ul)], ExtentsExt(payload));

        // One WRITE_ZEROES and one TRIM, each longer than 4 GiB.
        await client.SendExtendedRequestAsync(CmdWriteZeroes, 2, 0, (ulong)Large - 65536);
        Assert.Equal((1, ChunkNone, 2ul), Head(await client.ReadExtendedChunkAsync()));
        await client.SendExtendedRequestAsync(CmdTrim, 3, 65536, (ulong)Large - 65536);
        Assert.Equal((1, ChunkNone, 3ul), Head(await client.ReadExtendedChunkAsync()));

        await client.SendExtendedRequestAsync(CmdBlockStatus, 4, 0, Large);
        (_, type, _, _, payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal(ChunkBlockStatusExt, type);
        Assert.Equal([((ulong)Large, 3ul)], ExtentsExt(payload));
    }

    private static (ushort Flags, ushort Type, ulong Handle) Head((ushort Flags, ushort Type, ulong Handle, ulong Offset, byte[] Payload) chunk) =>
        (chunk.Flags, chunk.Type, chunk.Handle);

    [Fact]
    public async Task Read_LongerThanTheMaximum_FailsThatRequestOnly()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Large));
        await client.SendExtendedRequestAsync(CmdRead, 1, 0, 5L << 30);
        (_, ushort type, ulong handle, _, byte[] payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal((ChunkError, 1ul), (type, handle));
        Assert.Equal(NbdEinval, BinaryPrimitives.ReadUInt32BigEndian(payload));
        await client.SendExtendedRequestAsync(CmdFlush, 2, 0, 0);
        Assert.Equal((1, ChunkNone, 2ul), Head(await client.ReadExtendedChunkAsync()));
    }

    [Fact]
    public async Task Write_OverTheMaximum_PayloadSkippedAndStaysInSync()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size * 64));
        byte[] big = new byte[(33 * 1024 * 1024) + 1];
        await client.SendExtendedRequestAsync(CmdWrite, 1, 0, (ulong)big.Length, payload: big);
        (_, ushort type, ulong handle, _, _) = await client.ReadExtendedChunkAsync();
        Assert.Equal((ChunkError, 1ul), (type, handle));
        await client.SendExtendedRequestAsync(CmdFlush, 2, 0, 0);
        Assert.Equal((1, ChunkNone, 2ul), Head(await client.ReadExtendedChunkAsync()));
    }

    [Fact]
    public async Task Write_AnnouncingMoreThanFourGiB_Closes()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Large));
        await client.SendExtendedRequestAsync(CmdWrite, 1, 0, 5L << 30, payload: new byte[4096]);
        Assert.Equal(0, await client.DrainUntilClosedAsync());
    }

    [Fact]
    public async Task PayloadLenFlag_OnBlockStatus_PayloadSkippedAndRefused()
    {
        // BLOCK_STAT_PAYLOAD is not offered: the payload is read past and the request fails, the stream stays framed.
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        Assert.Equal(0, client.TransmissionFlags & (1 << 12));
        byte[] payload = new byte[40];
        Array.Fill(payload, (byte)0x21); // would parse as a bad magic if taken for the next header
        await client.SendExtendedRequestAsync(CmdBlockStatus, 1, 0, (ulong)payload.Length, FlagPayloadLen, payload);
        (_, ushort type, ulong handle, _, byte[] error) = await client.ReadExtendedChunkAsync();
        Assert.Equal((ChunkError, 1ul), (type, handle));
        Assert.Equal(NbdEinval, BinaryPrimitives.ReadUInt32BigEndian(error));
        await client.SendExtendedRequestAsync(CmdBlockStatus, 2, 0, 4096);
        Assert.Equal(ChunkBlockStatusExt, (await client.ReadExtendedChunkAsync()).Type);
    }

    [Fact]
    public async Task CompactRequest_AfterNegotiation_Closes()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendRequestAsync(CmdFlush, 1, 0, 0);
        await client.SendAsync(new byte[4]); // the compact header is 4 bytes short of an extended one
        Assert.Equal(0, await client.DrainUntilClosedAsync());
    }

    [Fact]
    public async Task BadMagic_Closes()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendAsync(ExtendedRequest(0, CmdRead, 1, 0, 512, magic: 0x21E41C70));
        Assert.Equal(0, await client.DrainUntilClosedAsync());
    }

    [Fact]
    public async Task TruncatedHeader_ThenHangUp_ClosesWithoutReply()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size));
        await client.SendAsync(ExtendedRequest(0, CmdRead, 1, 0, 512).AsMemory(0, 20));
        await client.CloseSendAsync();
        Assert.Equal(0, await client.DrainUntilClosedAsync());
    }

    /// <summary>
    /// Seeded streams of valid and hostile extended requests (any command, flags including PAYLOAD_LEN, lengths
    /// from 0 to 2^63, offsets in and out of range, wrong magics, payloads cut short), then a hang-up: the server
    /// always finishes, and what it sent parses as whole extended reply chunks, each for a request that was sent.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public async Task HostileRequestStreams_NeverHangOrDesync(int seed)
    {
        var random = new Random(seed);
        ulong[] lengths = [0, 1, 511, 512, 4096, 65536, (32 * 1024 * 1024) + 1, 1UL << 32, (1UL << 32) + 512, 1UL << 40, ulong.MaxValue >> 1, ulong.MaxValue];
        for (int round = 0; round < 25; round++)
        {
            await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size * 4));
            var stream = new List<byte>();
            var cookies = new HashSet<ulong>();
            int requests = random.Next(1, 10);
            for (int i = 0; i < requests; i++)
            {
                ushort command = (ushort)random.Next(0, 10);
                if (command == CmdDisc)
                {
                    command = CmdRead;
                }

                ushort flags = (ushort)(random.Next(0, 4) == 0 ? random.Next(0, 64) : 0);
                ulong length = random.Next(0, 3) == 0 ? (ulong)random.NextInt64() : lengths[random.Next(lengths.Length)];
                ulong offset = random.Next(0, 4) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(0, (int)(Size * 4));
                ulong cookie = (ulong)round << 32 | (uint)i;
                bool badMagic = random.Next(0, 20) == 0;
                stream.AddRange(ExtendedRequest(flags, command, cookie, offset, length, badMagic ? RequestMagic : ExtendedRequestMagic));
                cookies.Add(cookie);
                if (badMagic)
                {
                    break;
                }

                bool payload = command == CmdWrite || (flags & FlagPayloadLen) != 0;
                if (payload && length != 0)
                {
                    // A payload sent whole if small, else cut short: the stream then ends inside it.
                    int sent = length <= 65536 ? (int)length : random.Next(0, 4096);
                    stream.AddRange(new byte[sent]);
                    if ((ulong)sent < length)
                    {
                        break;
                    }
                }
            }

            await client.SendAsync(stream.ToArray());
            await client.CloseSendAsync();
            byte[] replies = await client.ReadToEndAsync();
            await client.WaitServerAsync();

            int at = 0;
            while (at < replies.Length)
            {
                Assert.True(replies.Length - at >= 32, $"seed {seed} round {round}: {replies.Length - at} bytes left, not a whole header");
                Assert.Equal(ExtendedReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(replies.AsSpan(at)));
                Assert.Contains(BinaryPrimitives.ReadUInt64BigEndian(replies.AsSpan(at + 8)), cookies);
                ulong payloadLength = BinaryPrimitives.ReadUInt64BigEndian(replies.AsSpan(at + 24));
                Assert.True(payloadLength <= (ulong)(replies.Length - at - 32), $"seed {seed} round {round}: chunk payload runs past the end");
                at += 32 + (int)payloadLength;
            }
        }
    }

    [Fact]
    public async Task BlockStatus_WithoutContexts_FailsWithEinval()
    {
        await using NbdTestClient client = await ConnectedAsync(new MemoryImage(Size), baseAllocation: false);
        await client.SendExtendedRequestAsync(CmdBlockStatus, 1, 0, 4096);
        (_, ushort type, _, _, byte[] payload) = await client.ReadExtendedChunkAsync();
        Assert.Equal(ChunkError, type);
        Assert.Equal(NbdEinval, BinaryPrimitives.ReadUInt32BigEndian(payload));
    }
}
