using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Nbd.Tests;

/// <summary>
/// The client against real servers: qemu-nbd, nbdkit's memory plugin (UNIX and TCP) and our own `tapdisk serve`.
/// Each run writes with many requests in flight, reads back, closes, and then the peer's own tools (qemu-img compare
/// over NBD) check the disk against what the test expects.
/// </summary>
public sealed class NbdImagePeerTests : IDisposable
{
    private const int DiskBytes = 8 * 1024 * 1024;
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromMinutes(2);

    private readonly TempDirectory _sockets = TempDirectory.ForSockets();
    private readonly TempDirectory _scratch = new();
    private readonly List<Process> _peers = [];

    [Fact]
    public async Task QemuNbd_UnixSocket_WritesCheckedByQemuImg()
    {
        string file = _scratch.File("disk.raw");
        byte[] expected = DiskContent.Pattern(DiskBytes, 3);
        await File.WriteAllBytesAsync(file, expected);
        string socket = _sockets.File("qemu.sock");
        StartPeer("qemu-nbd", "-t", "-f", "raw", "-k", socket, file);
        WaitForFile(socket);

        await ExerciseAndCheck(socket, "nbd+unix:///?socket=" + socket, expected);
    }

    [Fact]
    public async Task Nbdkit_Memory_UnixSocket_WritesCheckedByQemuImg()
    {
        string socket = _sockets.File("nbdkit.sock");
        string pidFile = _sockets.File("nbdkit.pid");
        StartPeer("nbdkit", "-f", "-U", socket, "-P", pidFile, "memory", DiskBytes.ToString(CultureInfo.InvariantCulture));
        WaitForFile(pidFile);

        await ExerciseAndCheck(socket, "nbd+unix:///?socket=" + socket, new byte[DiskBytes]);
    }

    [Fact]
    public async Task Nbdkit_Memory_Tcp_WritesCheckedByQemuImg()
    {
        int port = FreePort();
        string pidFile = _sockets.File("nbdkit.pid");
        string portText = port.ToString(CultureInfo.InvariantCulture);
        StartPeer("nbdkit", "-f", "-i", "127.0.0.1", "-p", portText, "-P", pidFile, "memory", DiskBytes.ToString(CultureInfo.InvariantCulture));
        WaitForFile(pidFile);

        await ExerciseAndCheck("127.0.0.1:" + portText, $"nbd://127.0.0.1:{portText}", new byte[DiskBytes]);
    }

    [Fact]
    public async Task TapdiskServe_Raw_WritesCheckedByQemuImg()
    {
        string file = _scratch.File("disk.raw");
        byte[] expected = DiskContent.Pattern(DiskBytes, 5);
        await File.WriteAllBytesAsync(file, expected);
        string socket = _sockets.File("tapdisk.sock");
        StartPeer(ExternalTool.RepoExecutable("Tapdisk.Daemon", "tapdisk"), "serve", "-s", socket, "aio:" + file);
        WaitForFile(socket);

        await ExerciseAndCheck(socket, "nbd+unix:///?socket=" + socket, expected);
    }

    /// <summary>Writes (many in flight), zeroes, flushes, reads everything back, closes; then qemu-img compares.</summary>
    private async Task ExerciseAndCheck(string address, string uri, byte[] expected)
    {
        using (NbdImage image = NbdImage.Open(address, ImageOpenOptions.ReadWrite, NbdClientOptions.Default))
        {
            Assert.Equal(expected.Length, image.SizeBytes);

            // 128 scattered 4 KiB writes at once, then one 1 MiB write and a FUA write.
            var writes = new List<Task>();
            for (int i = 0; i < 128; i++)
            {
                int offset = i * 3 * 4096 % (DiskBytes - 4096);
                offset -= offset % 4096;
                byte[] block = DiskContent.Pattern(4096, 100 + i);
                block.CopyTo(expected, offset);
                writes.Add(image.WriteAsync(offset, block).AsTask());
            }

            // Distinct offsets wrap onto each other; the last write to each offset wins, so wait before the overlap check.
            await Task.WhenAll(writes).WaitAsync(s_hangGuard);
            byte[] big = DiskContent.Pattern(1024 * 1024, 9);
            big.CopyTo(expected, 5 * 1024 * 1024);
            await image.WriteAsync(5 * 1024 * 1024, big).AsTask().WaitAsync(s_hangGuard);
            byte[] fua = DiskContent.Pattern(4096, 11);
            fua.CopyTo(expected, 7 * 1024 * 1024);
            await image.WriteAsync(7 * 1024 * 1024, fua, WriteFlags.Fua).AsTask().WaitAsync(s_hangGuard);

            // Zeroing: native WRITE_ZEROES where offered, emulated otherwise.
            await image.ZeroAsync(6 * 1024 * 1024, 256 * 1024).AsTask().WaitAsync(s_hangGuard);
            Array.Clear(expected, 6 * 1024 * 1024, 256 * 1024);
            if ((image.Capabilities & ImageCapabilities.Flush) != 0)
            {
                await image.FlushAsync().AsTask().WaitAsync(s_hangGuard);
            }

            // Everything back, 64 KiB requests all in flight together.
            byte[] actual = new byte[DiskBytes];
            var reads = new List<Task>();
            for (int at = 0; at < DiskBytes; at += 65536)
            {
                reads.Add(image.ReadAsync(at, actual.AsMemory(at, 65536)).AsTask());
            }

            await Task.WhenAll(reads).WaitAsync(s_hangGuard);
            DiskContent.AssertSame(expected, actual, "read back through the client");
            Assert.Null(image.Failure);
        }

        string expectedFile = _scratch.File("expected.raw");
        await File.WriteAllBytesAsync(expectedFile, expected);
        ExternalTool.Run(ExternalTool.Require("qemu-img"), ["compare", "-f", "raw", "-F", "raw", expectedFile, uri], stdin: null, s_hangGuard)
            .EnsureSuccess("qemu-img compare " + uri);
    }

    private void StartPeer(string tool, params string[] args)
    {
        string path = tool.Contains('/', StringComparison.Ordinal) ? tool : ExternalTool.Require(tool);
        ProcessStartInfo psi = ExternalTool.StartInfo(path, args);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        Process p = PeerLauncher.Start(psi);
        _peers.Add(p);
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
    }

    /// <summary>Polls until a peer has created its socket or pid file; the clock is only a hang guard.</summary>
    private void WaitForFile(string path)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(path))
        {
            Assert.True(clock.Elapsed < s_hangGuard, $"{path} did not appear");
            Assert.False(_peers[^1].HasExited, $"the peer exited with {(_peers[^1].HasExited ? _peers[^1].ExitCode : 0)} before creating {path}");
            Thread.Sleep(20);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        foreach (Process p in _peers)
        {
            if (!p.HasExited)
            {
                p.Kill();
                p.WaitForExit(s_hangGuard);
            }

            p.Dispose();
        }

        _sockets.Dispose();
        _scratch.Dispose();
    }
}
