using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// `tapdisk serve` against both generations of real NBD clients: Debian 12's (qemu 7.2, libnbd 1.14: compact headers,
/// structured replies) and today's (qemu 10, libnbd 1.22: extended headers by default), installed by .ci/newclients.
/// Each test shows which headers the client negotiated, then reads, writes, zeroes and maps through it.
/// </summary>
public sealed class NbdClientGenerationsTests : IntegrationTest
{
    private const long GiB = 1L << 30;
    private const long LargeSize = 6 * GiB;
    private const int Mib = 1 << 20;

    private string NewRaw(string name, long size)
    {
        string file = Scratch.File(name);
        using (FileStream f = File.Create(file))
        {
            f.SetLength(size);
        }

        return file;
    }

    /// <summary>qemu-io of one generation with its NBD negotiation traced (on stderr); fails on a failed command.</summary>
    private static string QemuIoTraced(string generation, string socket, params string[] commands)
    {
        var args = new List<string> { "-f", "raw", "--trace", "nbd_receive_option_reply" };
        foreach (string c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add(NbdUri(socket));
        ProcessResult r = ExternalTool.Run(NbdClients.Qemu(generation, "qemu-io"), args, stdin: null, HangGuard);
        // qemu-io reports a refused command on stdout and still exits 0.
        bool refused = r.StandardOutput.Contains("fail", StringComparison.OrdinalIgnoreCase) || r.StandardOutput.Contains("error", StringComparison.OrdinalIgnoreCase)
            || r.StandardOutput.Contains("cannot", StringComparison.OrdinalIgnoreCase);
        Assert.True(r.ExitCode == 0 && !refused, $"qemu-io {generation} {string.Join(' ', commands)}: {r}");
        return r.StandardOutput + r.StandardError;
    }

    /// <summary>qemu 10 asks for extended headers and gets them; qemu 7.2 does not know them.</summary>
    private static void AssertQemuHeaders(string generation, string trace)
    {
        const string acked = "option reply 11 (extended headers), type 1 (ack)";
        if (generation == "10")
        {
            Assert.Contains(acked, trace, StringComparison.Ordinal);
        }
        else
        {
            Assert.DoesNotContain("extended headers", trace, StringComparison.Ordinal);
            Assert.Contains("(structured reply), type 1 (ack)", trace, StringComparison.Ordinal);
        }
    }

    private static ProcessResult QemuImg(string generation, params string[] args) =>
        ExternalTool.Run(NbdClients.Qemu(generation, "qemu-img"), args, stdin: null, HangGuard);

    [Theory]
    [InlineData("7.2")]
    [InlineData("10")]
    public void Qemu_ReadWriteZeroInfoMapConvertCompare(string generation)
    {
        string image = NewRaw("disk.raw", 64 * Mib);
        using Served served = Serve("aio:" + image, readOnly: false);
        string uri = NbdUri(served.Socket);

        string trace = QemuIoTraced(generation, served.Socket, "write -P 0xab 1M 256k", "write -P 0xcd 8M 1M", "write -z 8M 512k", "read -P 0xab 1M 256k", "read -P 0 8M 512k", "read -P 0xcd 8704k 512k");
        AssertQemuHeaders(generation, trace);

        ProcessResult info = QemuImg(generation, "info", "--output=json", "-f", "raw", uri).EnsureSuccess("qemu-img info");
        using (JsonDocument doc = JsonDocument.Parse(info.StandardOutput))
        {
            Assert.Equal(64L * Mib, doc.RootElement.GetProperty("virtual-size").GetInt64());
        }

        // The map: data where qemu-io wrote (the zeroed half may read as a hole), and nothing else.
        ProcessResult map = QemuImg(generation, "map", "--output=json", "-f", "raw", uri).EnsureSuccess("qemu-img map");
        using (JsonDocument doc = JsonDocument.Parse(map.StandardOutput))
        {
            var data = doc.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean())
                .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64())).ToList();
            Assert.Contains((1L * Mib, 256L * 1024), data);
            Assert.Contains(data, d => d.Item1 <= 8704L * 1024 && d.Item1 + d.Item2 >= 9L * Mib);
            Assert.Equal(64L * Mib, doc.RootElement.EnumerateArray().Sum(e => e.GetProperty("length").GetInt64()));
        }

        string copy = Scratch.File("copy.raw");
        QemuImg(generation, "convert", "-f", "raw", "-O", "raw", uri, copy).EnsureSuccess("qemu-img convert");
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(copy));
        QemuImg(generation, "compare", "-f", "raw", "-F", "raw", uri, copy).EnsureSuccess("qemu-img compare");

        // And the other way: convert into the export (qemu-img writes zeros as WRITE_ZEROES), then compare again.
        byte[] pattern = new byte[4 * Mib];
        new Random(7).NextBytes(pattern);
        string source = NewRaw("source.raw", 64 * Mib);
        using (FileStream f = new(source, FileMode.Open, FileAccess.Write))
        {
            f.Position = 16 * Mib;
            f.Write(pattern);
        }

        QemuImg(generation, "convert", "-n", "-f", "raw", "-O", "raw", source, uri).EnsureSuccess("qemu-img convert into nbd");
        QemuImg(generation, "compare", "-f", "raw", "-F", "raw", source, uri).EnsureSuccess("qemu-img compare after convert");
        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(image));
    }

    [Theory]
    [InlineData("1.14")]
    [InlineData("1.22")]
    public void Libnbd_InfoListMapCopyBothWays(string generation)
    {
        string image = NewRaw("disk.raw", 32 * Mib);
        byte[] pattern = new byte[128 * 1024];
        new Random(3).NextBytes(pattern);
        using (FileStream f = new(image, FileMode.Open, FileAccess.Write))
        {
            f.Position = 2 * Mib;
            f.Write(pattern);
        }

        using Served served = Serve("aio:" + image, readOnly: false);
        string uri = NbdUri(served.Socket);

        // nbdinfo names the headers it negotiated in its protocol line.
        string text = NbdClients.Libnbd(generation, "nbdinfo", uri).EnsureSuccess("nbdinfo").StandardOutput;
        Assert.Contains(generation == "1.22" ? "using extended packets" : "using structured packets", text, StringComparison.Ordinal);
        Assert.Contains("export-size: " + (32 * Mib).ToString(CultureInfo.InvariantCulture), text, StringComparison.Ordinal);

        // `tapdisk serve` has one export, named "" and described by its image.
        string list = NbdClients.Libnbd(generation, "nbdinfo", "--list", uri).EnsureSuccess("nbdinfo --list").StandardOutput;
        Assert.Contains("export=\"\":", list, StringComparison.Ordinal);
        Assert.Contains("description: aio:" + image, list, StringComparison.Ordinal);

        string[] map = NbdClients.Libnbd(generation, "nbdinfo", "--map", uri).EnsureSuccess("nbdinfo --map").StandardOutput
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(3))).ToArray();
        Assert.Equal(["0 2097152 3", "2097152 131072 0", "2228224 31326208 3"], map);

        string fromNbd = Scratch.File("from-nbd.raw");
        NbdClients.Libnbd(generation, "nbdcopy", uri, fromNbd).EnsureSuccess("nbdcopy from nbd");
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(fromNbd));

        string toNbd = NewRaw("to-nbd.raw", 32 * Mib);
        byte[] other = new byte[3 * Mib];
        new Random(5).NextBytes(other);
        using (FileStream f = new(toNbd, FileMode.Open, FileAccess.Write))
        {
            f.Position = 20 * Mib;
            f.Write(other);
        }

        NbdClients.Libnbd(generation, "nbdcopy", toNbd, uri).EnsureSuccess("nbdcopy to nbd");
        Assert.Equal(File.ReadAllBytes(toNbd), File.ReadAllBytes(image));

        if (generation == "1.22")
        {
            ProcessResult sh = NbdClients.Libnbd122(["nbdsh", "-u", uri, "-c", "print(h.get_extended_headers_negotiated(), h.get_structured_replies_negotiated())"]).EnsureSuccess("nbdsh");
            Assert.Equal("True True", sh.StandardOutput.Trim());
        }
    }

    /// <summary>
    /// A 6 GiB disk: nbdsh (libnbd 1.22, extended headers) issues one BLOCK_STATUS, one WRITE_ZEROES and one TRIM of
    /// more than 4 GiB each, which a compact header cannot carry; qemu 10 then zeroes and maps the same disk.
    /// </summary>
    [Theory]
    [InlineData("raw")]
    [InlineData("vhd")]
    public void LargeDisk_SingleRequestsOverFourGiB(string format)
    {
        string image;
        if (format == "raw")
        {
            image = NewRaw("large.raw", LargeSize);
        }
        else
        {
            image = CreateVhd("large.vhd", (int)(LargeSize / Mib));
        }

        using Served served = Serve((format == "raw" ? "aio:" : "vhd:") + image, readOnly: false);
        string uri = NbdUri(served.Socket);

        // Each call below is one NBD request (libnbd never splits one); a length over 4 GiB fails client-side
        // unless extended headers were negotiated.
        const string script = """
            G = 1 << 30
            size = h.get_size()
            assert h.get_extended_headers_negotiated(), "no extended headers"
            assert size == 6 * G, size
            h.pwrite(b"\x5a" * 65536, 0)
            h.pwrite(b"\xa5" * 65536, 5 * G)

            def status(offset, count):
                got = []
                def extent(meta, off, entries, err):
                    if meta == "base:allocation":
                        got.append((off, list(entries)))
                    return 0
                h.block_status_64(count, offset, extent)
                assert len(got) == 1, got
                return got[0]

            off, entries = status(0, size)
            covered = sum(length for length, flags in entries)
            assert off == 0 and covered > 4 * G, (off, covered)
            assert entries[0][1] & 1 == 0, entries[:4]
            print("map", covered, len(entries))

            h.zero(size - 65536, 0)
            assert h.pread(65536, 0) == bytes(65536)
            assert h.pread(65536, 5 * G) == bytes(65536)
            off, entries = status(0, size - 65536)
            print("zeroed", sum(length for length, flags in entries), all(flags & 2 for length, flags in entries))

            assert h.can_trim()
            h.pwrite(b"\x11" * 65536, 4 * G + 65536)
            h.trim(size - 65536, 65536)
            h.flush()
            h.pwrite(b"\x22" * 4096, size - 4096)
            assert h.pread(4096, size - 4096) == b"\x22" * 4096
            print("ok")
            """;
        ProcessResult sh = NbdClients.Libnbd122(["nbdsh", "--base-allocation", "-u", uri, "-c", script]);
        Assert.True(sh.ExitCode == 0, "nbdsh: " + sh);
        Assert.Contains("ok", sh.StandardOutput, StringComparison.Ordinal);

        // A raw file's zeroed range is a hole that reads as zeros; a VHD may keep zeroed blocks allocated (the reads
        // above already showed zeros).
        string zeroed = sh.StandardOutput.Split('\n').Single(l => l.StartsWith("zeroed ", StringComparison.Ordinal));
        if (format == "raw")
        {
            Assert.EndsWith(" True", zeroed, StringComparison.Ordinal);
        }

        // qemu 10 over the same disk: a 5 GiB zero (-n: qemu-io allows no more than 2 GiB without it; it asks for a
        // fast zero, which both drivers offer here) and a full map.
        string trace = QemuIoTraced("10", served.Socket, "write -P 0x33 5G 64k", "write -P 0x44 1M 64k", "write -z -u -n 0 5G", "read -P 0 1M 64k", "read -P 0x33 5G 64k");
        AssertQemuHeaders("10", trace);
        ProcessResult map = QemuImg("10", "map", "--output=json", "-f", "raw", uri).EnsureSuccess("qemu-img map");
        using JsonDocument doc = JsonDocument.Parse(map.StandardOutput);
        Assert.Equal(LargeSize, doc.RootElement.EnumerateArray().Sum(e => e.GetProperty("length").GetInt64()));
        Assert.Contains(doc.RootElement.EnumerateArray(), e => e.GetProperty("data").GetBoolean() && e.GetProperty("start").GetInt64() == 5 * GiB);
    }

    [Fact]
    public void RawClient_MalformedExtendedRequests_ErrorOrCloseAndServerKeepsServing()
    {
        const ushort Read = 0, Write = 1, Flush = 3, BlockStatus = 7, ChunkNone = 0, ChunkError = 0x8001, PayloadLen = 1 << 5;
        string image = NewRaw("disk.raw", 16 * Mib);
        using Served served = Serve("aio:" + image, readOnly: false);

        using (RawNbdClient c = RawNbdClient.ConnectExtended(served.Socket))
        {
            // A payload on a command that takes none here: read past, refused, the stream stays framed.
            byte[] stray = new byte[64];
            Array.Fill(stray, (byte)0x21);
            ulong h = c.SendExtended(PayloadLen, BlockStatus, 0, (ulong)stray.Length, stray);
            (_, ushort type, ulong handle, _, byte[] payload) = c.ReceiveExtendedChunk();
            Assert.Equal((ChunkError, h), (type, handle));
            Assert.Equal(22u, BinaryPrimitives.ReadUInt32BigEndian(payload));

            // A read longer than 4 GiB: refused with an error chunk (a length only an extended header can say).
            h = c.SendExtended(0, Read, 0, 5UL << 30);
            (_, type, handle, _, _) = c.ReceiveExtendedChunk();
            Assert.Equal((ChunkError, h), (type, handle));

            // A write of 4 KiB beyond the end: its payload is consumed, the error is that request's alone.
            h = c.SendExtended(0, Write, 16 * Mib, 4096, new byte[4096]);
            (_, type, handle, _, _) = c.ReceiveExtendedChunk();
            Assert.Equal((ChunkError, h), (type, handle));

            h = c.SendExtended(0, Flush, 0, 0);
            (ushort flags, type, handle, _, _) = c.ReceiveExtendedChunk();
            Assert.Equal((1, ChunkNone, h), (flags, type, handle));

            // A compact-magic header after negotiating extended ones: nothing after it can be framed, so close.
            c.SendExtended(0, Read, 0, 512, magic: 0x25609513);
            Assert.True(c.IsClosedByServer());
        }

        using (RawNbdClient c = RawNbdClient.ConnectExtended(served.Socket))
        {
            // A write announcing more than 4 GiB of payload is a lie not worth reading: close.
            c.SendExtended(0, Write, 0, 5UL << 30, new byte[4096]);
            Assert.True(c.IsClosedByServer());
        }

        // The server keeps serving: a compact client and an extended one still work.
        using (RawNbdClient c = RawNbdClient.Connect(served.Socket))
        {
            c.Write(4096, new byte[512]);
            Assert.Equal(new byte[512], c.Read(4096, 512));
        }

        using (RawNbdClient c = RawNbdClient.ConnectExtended(served.Socket))
        {
            ulong h = c.SendExtended(0, Read, 4096, 512);
            (_, ushort type, ulong handle, ulong offset, byte[] payload) = c.ReceiveExtendedChunk();
            Assert.Equal((1, h, 4096ul, 520), (type, handle, offset, payload.Length)); // OFFSET_DATA: offset + data
        }
    }
}
