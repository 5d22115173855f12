using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text.Json;
using Tapdisk.Storage;
using Tapdisk.Testing;

namespace Tapdisk.Nbd.Tests;

/// <summary>Real peers (libnbd tools, qemu) against the server on a real UNIX socket.</summary>
public sealed class NbdUnixListenerTests
{
    private const long Size = 16 * 1024 * 1024;

    [Fact]
    public async Task NbdInfo_Json_ReportsExport()
    {
        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size));
        ProcessResult r = UnixServerScope.Run("nbdinfo", "--json", scope.Uri).EnsureSuccess("nbdinfo --json");
        using JsonDocument doc = JsonDocument.Parse(r.StandardOutput);
        JsonElement root = doc.RootElement;
        Assert.Equal("newstyle-fixed", root.GetProperty("protocol").GetString());
        JsonElement export = root.GetProperty("exports")[0];
        Assert.Equal(Size, export.GetProperty("export-size").GetInt64());
        Assert.True(export.GetProperty("can_flush").GetBoolean());
        Assert.True(export.GetProperty("can_fua").GetBoolean());
        Assert.True(export.GetProperty("can_trim").GetBoolean());
        Assert.True(export.GetProperty("can_zero").GetBoolean());
        Assert.True(export.GetProperty("can_fast_zero").GetBoolean());
        Assert.True(export.GetProperty("can_cache").GetBoolean());
        Assert.True(export.GetProperty("can_df").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(32 * 1024 * 1024, export.GetProperty("block_size_maximum").GetInt32());
        Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task NbdInfo_ReadOnlyImage_ReportsReadOnly()
    {
        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size, readOnly: true));
        ProcessResult r = UnixServerScope.Run("nbdinfo", "--json", scope.Uri).EnsureSuccess("nbdinfo --json");
        using JsonDocument doc = JsonDocument.Parse(r.StandardOutput);
        JsonElement export = doc.RootElement.GetProperty("exports")[0];
        Assert.True(export.GetProperty("is_read_only").GetBoolean());
        Assert.False(export.GetProperty("can_zero").GetBoolean());
    }

    [Fact]
    public async Task NbdInfo_List_ShowsExportName()
    {
        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size));
        ProcessResult r = UnixServerScope.Run("nbdinfo", "--list", scope.Uri).EnsureSuccess("nbdinfo --list");
        Assert.Contains("tapdisk_client", r.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("tapdisk test export", r.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NbdInfo_Map_ReportsDataAndHoles()
    {
        var image = new MemoryImage(Size);
        await image.WriteAsync(1024 * 1024, new byte[64 * 1024].Select(_ => (byte)1).ToArray());
        await using UnixServerScope scope = UnixServerScope.Start(image);
        ProcessResult r = UnixServerScope.Run("nbdinfo", "--map", scope.Uri).EnsureSuccess("nbdinfo --map");
        string[] lines = r.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^\s*0\s+1048576\s+3\s+hole,zero", lines[0]);
        Assert.Matches(@"^\s*1048576\s+65536\s+0\s+data", lines[1]);
        Assert.Matches(@"^\s*1114112\s+15663104\s+3\s+hole,zero", lines[2]);
    }

    [Fact]
    public async Task QemuImg_InfoAndMap_SeeSizeAndAllocation()
    {
        await using UnixServerScope scope = UnixServerScope.StartRaw(Size, f =>
        {
            f.Position = 4 * 1024 * 1024;
            f.Write(Enumerable.Repeat((byte)0x5a, 128 * 1024).ToArray());
        });
        ProcessResult info = UnixServerScope.Run("qemu-img", "info", "--output=json", "-f", "raw", scope.Uri).EnsureSuccess("qemu-img info");
        using (JsonDocument doc = JsonDocument.Parse(info.StandardOutput))
        {
            Assert.Equal(Size, doc.RootElement.GetProperty("virtual-size").GetInt64());
        }

        ProcessResult map = UnixServerScope.Run("qemu-img", "map", "--output=json", "-f", "raw", scope.Uri).EnsureSuccess("qemu-img map");
        using JsonDocument mapDoc = JsonDocument.Parse(map.StandardOutput);
        JsonElement data = mapDoc.RootElement.EnumerateArray().Single(e => e.GetProperty("data").GetBoolean());
        Assert.Equal(4 * 1024 * 1024, data.GetProperty("start").GetInt64());
        Assert.Equal(128 * 1024, data.GetProperty("length").GetInt64());
    }

    [Fact]
    public async Task QemuImg_ConvertAndCompare_RoundTripsContent()
    {
        using var work = new TempDirectory();
        string source = work.File("source.raw");
        byte[] content = new byte[Size];
        new Random(1234).NextBytes(content.AsSpan(0, 3 * 1024 * 1024 + 777));
        await File.WriteAllBytesAsync(source, content);

        await using UnixServerScope scope = UnixServerScope.StartRaw(Size);
        UnixServerScope.Run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", source, scope.Uri).EnsureSuccess("qemu-img convert to nbd");
        UnixServerScope.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", source, scope.Uri).EnsureSuccess("qemu-img compare");

        string back = work.File("back.raw");
        UnixServerScope.Run("qemu-img", "convert", "-f", "raw", "-O", "raw", scope.Uri, back).EnsureSuccess("qemu-img convert from nbd");
        Assert.Equal(content, await File.ReadAllBytesAsync(back));
    }

    [Fact]
    public async Task QemuIo_WriteReadDiscardZero_AllSucceed()
    {
        await using UnixServerScope scope = UnixServerScope.StartRaw(Size);
        ProcessResult r = UnixServerScope.Run(
            "qemu-io", "-f", "raw",
            "-c", "write -P 0xab 0 64k",
            "-c", "read -P 0xab 0 64k",
            "-c", "discard 0 64k",
            "-c", "write -z 64k 64k",
            "-c", "read -P 0 64k 64k",
            "-c", "write -P 0xcd 1000 3000",
            "-c", "read -P 0xcd 1000 3000",
            "-c", "flush",
            scope.Uri).EnsureSuccess("qemu-io");
        Assert.DoesNotContain("failed", r.StandardOutput + r.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Pattern verification", r.StandardOutput, StringComparison.Ordinal);

        byte[] buffer = new byte[3000];
        await scope.Image.ReadAsync(1000, buffer);
        Assert.All(buffer, b => Assert.Equal(0xcd, b));
    }

    [Fact]
    public async Task NbdCopy_BothDirections_PreservesContent()
    {
        using var work = new TempDirectory();
        string source = work.File("in.raw");
        byte[] content = new byte[Size];
        new Random(42).NextBytes(content);
        content.AsSpan(8 * 1024 * 1024, 2 * 1024 * 1024).Clear();
        await File.WriteAllBytesAsync(source, content);

        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size));
        UnixServerScope.Run("nbdcopy", source, scope.Uri).EnsureSuccess("nbdcopy to nbd");
        byte[] served = new byte[Size];
        await scope.Image.ReadAsync(0, served);
        Assert.Equal(content, served);

        string target = work.File("out.raw");
        UnixServerScope.Run("nbdcopy", scope.Uri, target).EnsureSuccess("nbdcopy from nbd");
        Assert.Equal(content, await File.ReadAllBytesAsync(target));
    }

    [Fact]
    public async Task RawSocket_MalformedInput_AnsweredOrDroppedAndServerKeepsServing()
    {
        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size));

        // An unknown option with a payload (the tapdisk desync of data-plane.md 6.3), then a bad header.
        await using (NbdTestClient raw = NbdTestClient.ConnectUnix(scope.Listener.Path))
        {
            await raw.GreetAsync();
            await raw.SendOptionAsync(12, "IHAVEOPT"u8);
            Assert.Equal(NbdTestClient.RepErrUnsup, (await raw.ReadOptionReplyAsync()).Type);
            await raw.SendOptionAsync(NbdTestClient.OptInfo, new byte[200 * 1024]);
            Assert.Equal(NbdTestClient.RepErrTooBig, (await raw.ReadOptionReplyAsync()).Type);
            await raw.SendAsync(new byte[16]);
            Assert.True(await raw.IsClosedByServerAsync());
        }

        // Transmission garbage after a good handshake.
        await using (NbdTestClient raw = NbdTestClient.ConnectUnix(scope.Listener.Path))
        {
            await raw.NegotiateAsync();
            await raw.SendAsync(Enumerable.Repeat((byte)0xff, 64).ToArray());
            Assert.True(await raw.IsClosedByServerAsync());
        }

        // A client that hangs up mid-write.
        await using (NbdTestClient raw = NbdTestClient.ConnectUnix(scope.Listener.Path))
        {
            await raw.NegotiateAsync();
            await raw.SendAsync(NbdTestClient.Request(0, NbdTestClient.CmdWrite, 1, 0, 65536));
        }

        UnixServerScope.Run("nbdinfo", "--size", scope.Uri).EnsureSuccess("nbdinfo after malformed clients");
    }

    [Fact]
    public async Task RawSocket_ClientThatStopsReading_IsDroppedAndFreesTheOnlyIoWorker()
    {
        // One I/O worker, which also sends the replies: while the stalled client holds it in a blocked send, nobody
        // else is served, so the second client's read completes only if the stalled one is dropped.
        var options = new NbdServerOptions { SendStallTimeout = TimeSpan.FromMilliseconds(300) };
        var backendOptions = new BlockBackendOptions { IoWorkers = new IoWorkerPool(1, "stall-test"), WorkerShare = 1 };
        await using UnixServerScope scope = StartFilled(0xa5, options, backendOptions);
        await using NbdTestClient stalled = await ConnectAndAskForUnreadRepliesAsync(scope);

        // Time for the worker to fill both socket buffers and block in the send (a wait, not a timing assertion: on
        // a machine too slow for it the other read is simply served first, and the drain below reads everything).
        await Task.Delay(TimeSpan.FromSeconds(2));

        await using NbdTestClient other = NbdTestClient.ConnectUnix(scope.Listener.Path);
        await other.NegotiateAsync();
        await other.SendRequestAsync(NbdTestClient.CmdRead, 7, 4096, 4096);
        (_, _, ulong handle, byte[] payload) = await other.ReadChunkAsync();
        Assert.Equal(7ul, handle);
        Assert.Equal(8 + 4096, payload.Length); // OFFSET_DATA: the offset, then the data

        // The server closed the stalled connection: what fitted in the socket buffers, then EOF, well short of 16 MiB.
        Assert.InRange(await stalled.DrainUntilClosedAsync(), 0, 8L * 1024 * 1024);
    }

    [Fact]
    public async Task RawSocket_LargeReads_HeaderAndDataSentTogether_InOrderWithSmallReplies()
    {
        // Replies of 64 KiB and up leave in one gather send from the request's buffer; smaller ones go through the
        // pipe. Interleave both kinds, structured (data runs between holes) and simple, and check every byte.
        byte[] content = new byte[Size];
        new Random(11).NextBytes(content.AsSpan(0, 1 << 20));
        content.AsSpan(256 * 1024, 128 * 1024).Clear();
        await using UnixServerScope scope = UnixServerScope.StartRaw(Size, f =>
        {
            // Data, a 128 KiB hole, data; the rest of the file is a hole too.
            f.Write(content, 0, 256 * 1024);
            f.Position = 384 * 1024;
            f.Write(content, 384 * 1024, 640 * 1024);
        });

        await using (NbdTestClient structured = NbdTestClient.ConnectUnix(scope.Listener.Path))
        {
            await structured.NegotiateAsync();
            await structured.SendRequestAsync(NbdTestClient.CmdRead, 1, 0, 1 << 20);
            await structured.SendRequestAsync(NbdTestClient.CmdRead, 2, 4096, 512);
            await structured.SendRequestAsync(NbdTestClient.CmdRead, 3, 65536, 128 * 1024);
            var seen = new Dictionary<ulong, byte[]> { [1] = new byte[1 << 20], [2] = new byte[512], [3] = new byte[128 * 1024] };
            var start = new Dictionary<ulong, long> { [1] = 0, [2] = 4096, [3] = 65536 };
            int done = 0, holes = 0;
            while (done < 3)
            {
                (ushort flags, ushort type, ulong handle, byte[] payload) = await structured.ReadChunkAsync();
                long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(payload);
                if (type == 1)
                {
                    payload.AsSpan(8).CopyTo(seen[handle].AsSpan((int)(offset - start[handle])));
                }
                else
                {
                    Assert.Equal(2, type); // OFFSET_HOLE: the buffer is already zeros
                    holes++;
                }

                done += flags & 1;
            }

            Assert.Equal(content.AsSpan(0, 1 << 20).ToArray(), seen[1]);
            Assert.Equal(content.AsSpan(4096, 512).ToArray(), seen[2]);
            Assert.Equal(content.AsSpan(65536, 128 * 1024).ToArray(), seen[3]);
            Assert.Equal(1, holes);
        }

        await using NbdTestClient simple = NbdTestClient.ConnectUnix(scope.Listener.Path);
        await simple.NegotiateAsync(structured: false);
        await simple.SendRequestAsync(NbdTestClient.CmdRead, 4, 131072, 256 * 1024);
        await simple.SendRequestAsync(NbdTestClient.CmdRead, 5, 0, 4096);
        for (int i = 0; i < 2; i++)
        {
            (uint error, ulong handle) = await simple.ReadSimpleReplyAsync();
            Assert.Equal(0u, error);
            (long offset, int length) = handle == 4 ? (131072L, 256 * 1024) : (0L, 4096);
            Assert.Equal(content.AsSpan((int)offset, length).ToArray(), await simple.ReadExactAsync(length));
        }
    }

    [Fact]
    public async Task RawSocket_UnalignedRequestsOnDirectIoRawFile_ReadModifyWrite()
    {
        await using UnixServerScope scope = UnixServerScope.StartRaw(Size);
        int minimum = scope.Image.Limits.MinimumBlockBytes;
        await using NbdTestClient raw = NbdTestClient.ConnectUnix(scope.Listener.Path);
        await raw.NegotiateAsync();
        byte[] data = Enumerable.Range(0, 5000).Select(i => (byte)(i % 251)).ToArray();
        await raw.SendRequestAsync(NbdTestClient.CmdWrite, 1, 777, 5000, 0, data);
        Assert.Equal((0u, 1ul), await raw.ReadSimpleReplyAsync());
        await raw.SendRequestAsync(NbdTestClient.CmdRead, 2, 700, 5100);
        (_, _, ulong handle, byte[] payload) = await raw.ReadChunkAsync();
        Assert.Equal(2ul, handle);
        byte[] expected = new byte[5100];
        data.CopyTo(expected, 77);
        Assert.Equal(expected, payload[8..]);
        Assert.True(minimum >= 1);
    }

    [Fact]
    public async Task NbdCopy_FourConnections_AllServedConcurrently()
    {
        using var work = new TempDirectory();
        string source = work.File("in.raw");
        byte[] content = new byte[Size];
        new Random(7).NextBytes(content);
        await File.WriteAllBytesAsync(source, content);
        await using UnixServerScope scope = UnixServerScope.StartRaw(Size);
        UnixServerScope.Run("nbdcopy", "--connections=4", "--requests=16", source, scope.Uri).EnsureSuccess("nbdcopy with 4 connections");
        string target = work.File("out.raw");
        UnixServerScope.Run("nbdcopy", "--connections=4", scope.Uri, target).EnsureSuccess("nbdcopy back");
        Assert.Equal(content, await File.ReadAllBytesAsync(target));
    }

    [Fact]
    public async Task Start_StaleSocketFile_IsReplaced()
    {
        using var work = new TempDirectory();
        string path = work.File("stale.sock");
        await File.WriteAllTextAsync(path, "left over by a dead tapdisk");
        var server = new NbdServer(new NbdExport("", "", new MemoryImage(Size)));
        await using (NbdUnixListener listener = NbdUnixListener.Start(path, server))
        {
            UnixServerScope.Run("nbdinfo", "--size", $"nbd+unix:///?socket={path}").EnsureSuccess("nbdinfo on replaced socket");
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task StopAsync_ClientConnected_DropsItWhenTokenFires()
    {
        using var work = new TempDirectory();
        string path = work.File("nbd.sock");
        var server = new NbdServer(new NbdExport("", "", new MemoryImage(Size)));
        NbdUnixListener listener = NbdUnixListener.Start(path, server);
        await using NbdTestClient client = NbdTestClient.ConnectUnix(path);
        await client.NegotiateAsync();
        Assert.Equal(1, listener.ConnectionCount);

        using var cts = new CancellationTokenSource();
        Task stop = listener.StopAsync(cts.Token);
        await cts.CancelAsync();
        await stop.WaitAsync(NbdTestClient.Timeout);
        Assert.False(File.Exists(path));
        Assert.Equal(0, listener.ConnectionCount);
        Assert.True(await client.IsClosedByServerAsync());
        await listener.DisposeAsync();
    }

    [Fact]
    public async Task StopAsync_ClientNotReadingLargeReplies_SendIsInterruptedWhenTokenFires()
    {
        // Every reply is a large read sent straight from its buffer (never through the pipe), to a client that never
        // reads: the I/O worker sits in a blocked send that only the stop token can end (the stall timeout is far
        // beyond the test's patience).
        var options = new NbdServerOptions { SendStallTimeout = TimeSpan.FromMinutes(10) };
        await using UnixServerScope scope = StartFilled(0x3c, options);
        await using NbdTestClient stalled = await ConnectAndAskForUnreadRepliesAsync(scope);

        // Time for the worker to fill the socket buffers and block (a wait, not a timing assertion).
        await Task.Delay(TimeSpan.FromSeconds(1));
        using var cts = new CancellationTokenSource();
        Task stop = scope.Listener.StopAsync(cts.Token);
        await cts.CancelAsync();
        await stop.WaitAsync(NbdTestClient.Timeout);
        Assert.Equal(0, scope.Listener.ConnectionCount);
    }

    [Fact]
    public async Task StopAsync_ClientDisconnects_CompletesWithoutCancellation()
    {
        using var work = new TempDirectory();
        string path = work.File("nbd.sock");
        var server = new NbdServer(new NbdExport("", "", new MemoryImage(Size)));
        await using NbdUnixListener listener = NbdUnixListener.Start(path, server);
        NbdTestClient client = NbdTestClient.ConnectUnix(path);
        await client.NegotiateAsync();
        Task stop = listener.StopAsync();
        await client.SendRequestAsync(NbdTestClient.CmdDisc, 0, 0, 0);
        Assert.True(await client.IsClosedByServerAsync());
        await client.DisposeAsync();
        await stop.WaitAsync(NbdTestClient.Timeout);
    }

    [Fact]
    public async Task HandshakeTimeout_ManySilentClients_EachClosedAndReportedInBursts()
    {
        const int Clients = 50;
        var logger = new ListLogger();
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        await using UnixServerScope scope = UnixServerScope.Start(new TempDirectory(), new MemoryImage(Size), options: options, logger: logger);
        Socket[] clients = [.. Enumerable.Range(0, Clients).Select(_ => RawUnix.Connect(scope.Listener.Path))];
        try
        {
            // Each gets the 18-byte greeting, never answers, and is closed by the server.
            int[] received = await Task.WhenAll(clients.Select(RawUnix.ReadUntilClosedAsync));
            Assert.All(received, n => Assert.Equal(18, n));
        }
        finally
        {
            Array.ForEach(clients, c => c.Dispose());
        }

        await RawUnix.WaitUntilAsync(() => scope.Listener.ConnectionCount == 0, "the listener to forget its clients");

        // Reported as counts on aggregated lines, with no line per client.
        await RawUnix.WaitUntilAsync(() => RawUnix.HandshakeTimeoutsLogged(logger) == Clients, $"{Clients} reported drops");
        Assert.DoesNotContain(logger.Entries, e => e.EventId == 3);
    }

    [Fact]
    public async Task HandshakeTimeout_ClientSendingOptionsSlowly_IsClosedAtTheDeadline()
    {
        // The deadline covers the whole negotiation, not the time between bytes: a client that keeps it busy (a few
        // options answered, then an option payload a byte at a time, which would take nearly an hour) is still dropped.
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        await using UnixServerScope scope = UnixServerScope.Start(new TempDirectory(), new MemoryImage(Size), options: options);
        using Socket client = RawUnix.Connect(scope.Listener.Path);
        await RawUnix.ReadExactAsync(client, 18);
        await client.SendAsync(new byte[] { 0, 0, 0, 3 }, SocketFlags.None);
        using var stop = new CancellationTokenSource();
        Task trickle = TrickleOptionsAsync(client, stop.Token);

        await RawUnix.ReadUntilClosedAsync(client);
        await stop.CancelAsync();
        await trickle.WaitAsync(RawUnix.HangGuard);
        await RawUnix.WaitUntilAsync(() => scope.Listener.ConnectionCount == 0, "the listener to forget its client");
    }

    [Fact]
    public async Task HandshakeTimeout_ClientNegotiatedInTime_IsServedPastTheDeadline()
    {
        var logger = new ListLogger();
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(2) };
        await using UnixServerScope scope = UnixServerScope.Start(new TempDirectory(), new MemoryImage(Size), options: options, logger: logger);
        await using NbdTestClient client = NbdTestClient.ConnectUnix(scope.Listener.Path);
        await client.NegotiateAsync();

        // Idle in transmission for longer than the handshake deadline (a wait, not a timing assertion), then served.
        await Task.Delay(options.HandshakeTimeout * 2);
        await client.SendRequestAsync(NbdTestClient.CmdFlush, 1, 0, 0);
        Assert.Equal((0u, 1ul), await client.ReadSimpleReplyAsync());
        Assert.Equal(1, scope.Listener.ConnectionCount);
        Assert.Equal(0, RawUnix.HandshakeTimeoutsLogged(logger));
    }

    [Fact]
    public async Task Listen_BurstOfNonBlockingConnects_AllConnectAndAreServed()
    {
        // The reference's backlog of 10 made most of such a burst fail at once with EAGAIN.
        const int Clients = 500;
        await using UnixServerScope scope = UnixServerScope.Start(new MemoryImage(Size));
        (List<Socket> clients, List<SocketError> failures) = UnixConnectBurst.Connect(scope.Listener.Path, Clients);
        try
        {
            Assert.Empty(failures);

            // Every one is served: it gets the greeting.
            foreach (byte[] greeting in await Task.WhenAll(clients.Select(c => RawUnix.ReadExactAsync(c, 18))))
            {
                Assert.Equal(NbdTestClient.NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
            }
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }

        // And all are closed cleanly once they hang up.
        await RawUnix.WaitUntilAsync(() => scope.Listener.ConnectionCount == 0, "the listener to forget its clients");
    }

    /// <summary>Two LIST options, then one option payload a byte every 50 ms, until cancelled or the socket fails.</summary>
    private static async Task TrickleOptionsAsync(Socket client, CancellationToken cancellationToken)
    {
        try
        {
            byte[] list = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(list, NbdTestClient.IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), NbdTestClient.OptList);
            await client.SendAsync(list, SocketFlags.None, cancellationToken);
            await client.SendAsync(list, SocketFlags.None, cancellationToken);

            byte[] header = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(header, NbdTestClient.IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), NbdTestClient.OptList);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), 60 * 1024);
            await client.SendAsync(header, SocketFlags.None, cancellationToken);
            while (true)
            {
                await client.SendAsync(new byte[1], SocketFlags.None, cancellationToken);
                await Task.Delay(50, cancellationToken);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The server dropped the client, or the test is done.
        }
    }

    /// <summary>A raw image with data everywhere: holes would be answered with small OFFSET_HOLE chunks that never fill the socket buffers.</summary>
    private static UnixServerScope StartFilled(byte fill, NbdServerOptions options, BlockBackendOptions? backendOptions = null) =>
        UnixServerScope.StartRaw(Size, f => f.Write(Enumerable.Repeat(fill, (int)Size).ToArray()), options, backendOptions);

    /// <summary>A client that asks for 16 MiB of read replies and never reads them: far more than both socket buffers hold.</summary>
    private static async Task<NbdTestClient> ConnectAndAskForUnreadRepliesAsync(UnixServerScope scope)
    {
        NbdTestClient stalled = NbdTestClient.ConnectUnix(scope.Listener.Path);
        await stalled.NegotiateAsync();
        for (ulong i = 0; i < 4; i++)
        {
            await stalled.SendRequestAsync(NbdTestClient.CmdRead, i, 0, 4 * 1024 * 1024);
        }

        return stalled;
    }
}
