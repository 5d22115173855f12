using System.Buffers.Binary;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Xunit;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// The client against servers that lie, stall or hang up (a real UNIX socket each): the open is refused with the
/// reason, or the disk's outstanding requests fail with it; nothing hangs and no other disk is touched.
/// </summary>
public sealed class NbdClientHostileServerTests
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(1);

    // Short bounds so the stall tests finish quickly; they are the client's own timeouts, not waits of the test.
    private static readonly NbdClientOptions s_options = new() { ConnectTimeout = TimeSpan.FromMilliseconds(500), RequestTimeout = TimeSpan.FromMilliseconds(500) };

    private static NbdImage Open(FakeNbdServer server) => NbdImage.Open(server.SocketPath, ImageOpenOptions.ReadWrite with { DirectIo = false }, s_options);

    private static ImageOpenException OpenFails(FakeNbdServer server) => Assert.Throws<ImageOpenException>(() => Open(server).Dispose());

    private static async Task<ErrnoIOException> ReadFails(NbdImage image, long offset = 0, int length = 4096) =>
        await Assert.ThrowsAsync<ErrnoIOException>(async () => await image.ReadAsync(offset, new byte[length]).AsTask().WaitAsync(s_hangGuard));

    [Fact]
    public void Open_BadGreetingMagic_RefusedWithReason()
    {
        using var server = new FakeNbdServer(s => s.Send(new byte[18]));
        Assert.Contains("bad greeting magic", OpenFails(server).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_OversizeOptionReply_RefusedWithoutReadingIt()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.SendGreeting(NBD_FLAG_FIXED_NEWSTYLE);
            s.ReceiveExactly(4);
            s.ReceiveOption();
            s.SendOptionReply(NBD_OPT_GO, NBD_REP_INFO, [], lengthOverride: 0xFFFFFFF0);
            s.Stall();
        });
        Assert.Contains("exceeds", OpenFails(server).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_ExportSizeBeyondInt64_Refused()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.SendGreeting(NBD_FLAG_FIXED_NEWSTYLE);
            s.ReceiveExactly(4);
            s.ReceiveOption();
            byte[] info = new byte[12];
            BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), ulong.MaxValue);
            s.SendOptionReply(NBD_OPT_GO, NBD_REP_INFO, info);
            s.SendOptionReply(NBD_OPT_GO, NBD_REP_ACK, []);
        });
        Assert.Contains("out of range", OpenFails(server).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_ServerSilentDuringNegotiation_TimesOut()
    {
        using var server = new FakeNbdServer(s => s.Stall());
        ImageOpenException e = OpenFails(server);
        Assert.Equal(Errno.ETIMEDOUT, e.Errno);
    }

    [Fact]
    public void Open_ServerHangsUpDuringNegotiation_Refused()
    {
        using var server = new FakeNbdServer(s => s.Send([.. "NBDMAG"u8]));
        Assert.Contains("closed the connection during negotiation", OpenFails(server).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_ErrorReplyToGo_RefusedWithServerText()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.SendGreeting(NBD_FLAG_FIXED_NEWSTYLE);
            s.ReceiveExactly(4);
            s.ReceiveOption();
            s.SendOptionReply(NBD_OPT_GO, NBD_REP_ERR_POLICY, "not for you"u8);
        });
        Assert.Contains("not for you", OpenFails(server).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_BadReplyMagic_FailsTheDiskWithReason()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.Reply(s.ReceiveRequest(), magic: 0xDEADBEEF);
            s.Stall();
        });
        using NbdImage image = Open(server);
        ErrnoIOException e = await ReadFails(image);
        Assert.Contains("bad reply magic 0xdeadbeef", e.Message, StringComparison.Ordinal);

        // Dead for good: the next request fails at once with the same reason.
        Assert.Contains("bad reply magic", (await ReadFails(image)).Message, StringComparison.Ordinal);
        Assert.Contains("bad reply magic", image.Failure, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_StructuredReplyNotNegotiated_FailsTheDisk()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.Reply(s.ReceiveRequest(), magic: NBD_STRUCTURED_REPLY_MAGIC);
            s.Stall();
        });
        using NbdImage image = Open(server);
        Assert.Contains("structured reply", (await ReadFails(image)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_ReplyForUnknownHandle_FailsAllOutstanding()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            FakeRequest first = s.ReceiveRequest();
            s.ReceiveRequest();
            s.Reply(first, handle: first.Handle ^ 0x5A5A_0000_0000);
            s.Stall();
        });
        using NbdImage image = Open(server);
        Task<ErrnoIOException> a = ReadFails(image, 0);
        Task<ErrnoIOException> b = ReadFails(image, 4096);
        Assert.Contains("unknown handle", (await a).Message, StringComparison.Ordinal);
        Assert.Contains("unknown handle", (await b).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_DuplicateReply_IsAnUnknownHandle()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            FakeRequest first = s.ReceiveRequest();
            s.Reply(first);
            s.ReceiveRequest();
            s.Reply(first); // the first request's handle again, for the second request
            s.Stall();
        });
        using NbdImage image = Open(server);
        await image.ReadAsync(0, new byte[4096]).AsTask().WaitAsync(s_hangGuard);
        Assert.Contains("unknown handle", (await ReadFails(image)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_TruncatedReplyHeader_FailsTheDisk()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ReceiveRequest();
            byte[] half = new byte[8];
            BinaryPrimitives.WriteUInt32BigEndian(half, NBD_SIMPLE_REPLY_MAGIC);
            s.Send(half);
        });
        using NbdImage image = Open(server);
        Assert.Contains("inside a reply header", (await ReadFails(image)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_DisconnectInsideData_FailsTheDisk()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            FakeRequest request = s.ReceiveRequest();
            byte[] header = new byte[SimpleReplySize + 100];
            BinaryPrimitives.WriteUInt32BigEndian(header, NBD_SIMPLE_REPLY_MAGIC);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), request.Handle);
            s.Send(header);
        });
        using NbdImage image = Open(server);
        Assert.Contains("inside the data", (await ReadFails(image)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_ServerStalls_FailsWithTimeoutAfterTheBound()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ReceiveRequest();
            s.Stall();
        });
        using NbdImage image = Open(server);
        ErrnoIOException e = await ReadFails(image);
        Assert.Equal(Errno.ETIMEDOUT, e.Errno);
        Assert.Contains("no reply to READ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Write_ServerStopsReading_BlockedSendEndsAndEveryWriteFails()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.Stall();
        });
        using NbdImage image = Open(server);

        // 4 MiB of writes: far more than the two socket buffers hold, so a send blocks. Whichever comes first ends it,
        // the send's own timeout or the watchdog's (no reply within the same bound, which shuts the socket down).
        byte[] data = new byte[64 * 1024];
        var writes = new List<Task>();
        for (int i = 0; i < 64; i++)
        {
            writes.Add(image.WriteAsync(0, data).AsTask());
        }

        foreach (Task write in writes)
        {
            ErrnoIOException e = await Assert.ThrowsAsync<ErrnoIOException>(() => write.WaitAsync(s_hangGuard));
            Assert.Equal(Errno.ETIMEDOUT, e.Errno);
        }
    }

    [Fact]
    public async Task Read_ErrorReply_FailsThatRequestOnly()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.Reply(s.ReceiveRequest(), error: NBD_EIO);
            s.ServeUntilDisconnect();
        });
        using NbdImage image = Open(server);
        ErrnoIOException e = await ReadFails(image);
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Contains("NBD error 5", e.Message, StringComparison.Ordinal);

        // Per proto.md an error reply leaves the connection usable.
        byte[] data = new byte[4096];
        await image.ReadAsync(4096, data).AsTask().WaitAsync(s_hangGuard);
        Assert.Equal(server.Disk.AsSpan(4096, 4096).ToArray(), data);
        Assert.Null(image.Failure);
    }

    [Fact]
    public async Task HostileServer_OtherDiskKeepsServing()
    {
        using var good = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        using var bad = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.Reply(s.ReceiveRequest(), magic: 1);
        });
        using NbdImage goodImage = Open(good);
        using NbdImage badImage = Open(bad);
        await ReadFails(badImage);
        byte[] data = new byte[8192];
        await goodImage.ReadAsync(8192, data).AsTask().WaitAsync(s_hangGuard);
        Assert.Equal(good.Disk.AsSpan(8192, 8192).ToArray(), data);
        Assert.Null(goodImage.Failure);
    }

    [Fact]
    public async Task Close_SendsDisconnect()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        NbdImage image = Open(server);
        await image.WriteAsync(0, new byte[512]).AsTask().WaitAsync(s_hangGuard);
        image.Dispose();
        server.WaitForScript();
        Assert.True(server.SawDisconnect);
        Assert.Equal(new byte[512], server.Disk.AsSpan(0, 512).ToArray());
    }

    [Fact]
    public void Open_ReadOnlyExportForWriting_RefusedWithErofs()
    {
        using var server = new FakeNbdServer(s => s.NewstyleGo(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY));
        Assert.Equal(Errno.EROFS, OpenFails(server).Errno);
    }

    [Fact]
    public async Task Flush_NotOffered_RefusedNotDropped()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        using NbdImage image = Open(server);
        Assert.Equal(ImageCapabilities.None, image.Capabilities & (ImageCapabilities.Flush | ImageCapabilities.Trim | ImageCapabilities.Fua));
        ErrnoIOException e = await Assert.ThrowsAsync<ErrnoIOException>(async () => await image.FlushAsync());
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
        e = await Assert.ThrowsAsync<ErrnoIOException>(async () => await image.TrimAsync(0, 4096));
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
    }

    [Fact]
    public async Task Zero_NotOffered_EmulatedWithWrites()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        using NbdImage image = Open(server);
        await image.ZeroAsync(4096, 8192).AsTask().WaitAsync(s_hangGuard);
        byte[] data = new byte[8192];
        await image.ReadAsync(4096, data).AsTask().WaitAsync(s_hangGuard);
        Assert.Equal(new byte[8192], data);
    }

    [Fact]
    public async Task Open_OldstyleServer_Served()
    {
        using var server = new FakeNbdServer(s =>
        {
            byte[] greeting = new byte[16 + OldstyleGreetingTailSize];
            BinaryPrimitives.WriteUInt64BigEndian(greeting, NBDMAGIC);
            BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), OldstyleMagic);
            BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(16), (ulong)s.Disk.Length);
            s.Send(greeting);
            s.ServeUntilDisconnect();
        });
        using NbdImage image = Open(server);
        Assert.Equal("oldstyle", image.Handshake);
        await AssertReadsDisk(image, server);
    }

    [Fact]
    public async Task Open_ServerWithoutGo_FallsBackToExportName()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.SendGreeting(NBD_FLAG_FIXED_NEWSTYLE);
            s.ReceiveExactly(4);
            s.ReceiveOption();
            s.SendOptionReply(NBD_OPT_GO, NBD_REP_ERR_UNSUP, []);
            (uint option, byte[] name) = s.ReceiveOption();
            Assert.Equal(NBD_OPT_EXPORT_NAME, option);
            Assert.Equal("tapdisk_client"u8.ToArray(), name);
            byte[] reply = new byte[10 + ExportNameZeroPadSize];
            BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)s.Disk.Length);
            BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), NBD_FLAG_HAS_FLAGS);
            s.Send(reply);
            s.ServeUntilDisconnect();
        });
        using NbdImage image = Open(server);
        Assert.Equal("fixed newstyle (EXPORT_NAME)", image.Handshake);
        await AssertReadsDisk(image, server);
    }

    [Fact]
    public void Open_TcpNobodyListening_RefusedWithReason()
    {
        using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        int port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        ImageOpenException e = Assert.Throws<ImageOpenException>(() => NbdImage.Open($"127.0.0.1:{port}", ImageOpenOptions.ReadWrite, s_options).Dispose());
        Assert.Contains("connect failed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_NeitherSocketNorHostPort_RefusedWithEnoent()
    {
        ImageOpenException e = Assert.Throws<ImageOpenException>(() => NbdImage.Open("mirror-1", ImageOpenOptions.ReadWrite, s_options).Dispose());
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("nbdclient<pid>", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_MoreRequestsThanSlots_AllServed()
    {
        using var server = new FakeNbdServer(s =>
        {
            s.NewstyleGo();
            s.ServeUntilDisconnect();
        });
        using NbdImage image = NbdImage.Open(server.SocketPath, ImageOpenOptions.ReadWrite, s_options with { MaxInFlight = 4, RequestTimeout = s_hangGuard });
        byte[] data = new byte[server.Disk.Length];
        var reads = new List<Task>();
        for (int at = 0; at < data.Length; at += 1024)
        {
            int offset = at;
            reads.Add(Task.Run(async () => await image.ReadAsync(offset, data.AsMemory(offset, 1024))));
        }

        await Task.WhenAll(reads).WaitAsync(s_hangGuard);
        Assert.Equal(server.Disk, data);
    }

    private static async Task AssertReadsDisk(NbdImage image, FakeNbdServer server)
    {
        Assert.Equal(server.Disk.Length, image.SizeBytes);
        byte[] data = new byte[server.Disk.Length];
        await image.ReadAsync(0, data).AsTask().WaitAsync(s_hangGuard);
        Assert.Equal(server.Disk, data);
    }
}
