using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>NBD clients that die mid-request must not take the VBD or the daemon with them.</summary>
public sealed class ClientDeathTests : IntegrationTest
{
    private (int Pid, int Minor, string File) Create(int megabytes)
    {
        string file = CreateVhd("disk.vhd", megabytes);
        TapCtlOk("create", "-a", "vhd:" + file);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        return (pid, int.Parse(row["minor"], CultureInfo.InvariantCulture), file);
    }

    private void AssertStillServing(int pid, int minor, string file, int megabytes)
    {
        string nbd = NbdSocket(pid, minor);
        Assert.Equal(megabytes * 1024L * 1024, NbdExportSize(nbd));
        Dictionary<string, string> row = Assert.Single(List());
        Assert.Equal("0", row["state"]);
        QemuIo(nbd, "write -P 0x42 0 64k", "flush", "read -P 0x42 0 64k");

        TapCtlOk("destroy", "-p", pid.ToString(CultureInfo.InvariantCulture), "-m", minor.ToString(CultureInfo.InvariantCulture));
        WaitForExit(pid);
        Assert.Contains("is valid", VhdUtilOk("check", "-n", file), StringComparison.Ordinal);
    }

    [Fact]
    public void QemuIoWriterKilledMidWrite_DaemonKeepsServing()
    {
        (int pid, int minor, string file) = Create(256);
        long initial = new FileInfo(file).Length;
        Process writer = StartHelper(ExternalTool.Require("qemu-io"), "-f", "raw", "-c", "write -P 0x77 0 200M", NbdUri(NbdSocket(pid, minor)));

        // Kill it once blocks are being allocated (the image grows), i.e. in the middle of the transfer.
        WaitUntil(() => writer.HasExited || new FileInfo(file).Length > initial + (8L * 1024 * 1024), "the image to grow under the writer");
        if (!writer.HasExited)
        {
            writer.Kill();
        }

        writer.WaitForExit();
        AssertStillServing(pid, minor, file, 256);
    }

    [Fact]
    public void NbdcopyReaderKilled_DaemonKeepsServing()
    {
        (int pid, int minor, string file) = Create(256);
        QemuIo(NbdSocket(pid, minor), "write -P 0x31 0 32M", "flush");
        Process reader = StartHelper(ExternalTool.Require("nbdcopy"), NbdUri(NbdSocket(pid, minor)), "null:");
        Thread.Sleep(50); // not asserted on: wherever the copy is when it dies, the daemon must carry on
        if (!reader.HasExited)
        {
            reader.Kill();
        }

        reader.WaitForExit();
        AssertStillServing(pid, minor, file, 256);
    }

    [Fact]
    public void RawClientVanishesWithRequestsInFlight_DaemonKeepsServing()
    {
        (int pid, int minor, string file) = Create(64);
        string nbd = NbdSocket(pid, minor);

        // Pipelined reads whose replies are never read.
        using (RawNbdClient client = RawNbdClient.Connect(nbd))
        {
            for (int i = 0; i < 32; i++)
            {
                client.SendRead(i * 1024L * 1024, 1024 * 1024);
            }
        }

        // A WRITE whose payload stops after 4 KiB of the announced 1 MiB, then a reset.
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            s.Connect(new UnixDomainSocketEndPoint(nbd));
            s.LingerState = new LingerOption(true, 0);
            byte[] greeting = new byte[18];
            s.ReceiveTimeout = 120_000;
            int got = 0;
            while (got < greeting.Length)
            {
                int n = s.Receive(greeting, got, greeting.Length - got, SocketFlags.None);
                Assert.True(n > 0, "server closed during the greeting");
                got += n;
            }

            // Fixed newstyle, then NBD_OPT_EXPORT_NAME "" (no reply to wait for before transmission with NO_ZEROES).
            byte[] opt = new byte[4 + 16];
            BinaryPrimitives.WriteUInt32BigEndian(opt, 3);
            BinaryPrimitives.WriteUInt64BigEndian(opt.AsSpan(4), 0x49484156454F5054);
            BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), 1);
            s.Send(opt);
            byte[] write = new byte[28 + 4096];
            BinaryPrimitives.WriteUInt32BigEndian(write, 0x25609513);
            BinaryPrimitives.WriteUInt16BigEndian(write.AsSpan(6), 1);
            BinaryPrimitives.WriteUInt64BigEndian(write.AsSpan(8), 1);
            BinaryPrimitives.WriteUInt64BigEndian(write.AsSpan(16), 0);
            BinaryPrimitives.WriteUInt32BigEndian(write.AsSpan(24), 1024 * 1024);
            s.Send(write);
        }

        AssertStillServing(pid, minor, file, 64);
    }
}
