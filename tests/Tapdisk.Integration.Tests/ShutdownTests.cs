using System.Diagnostics;
using System.Globalization;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>A tapdisk ended by a signal while a writer is busy: flushed data survives, the image stays usable.</summary>
public sealed class ShutdownTests : IntegrationTest
{
    private const long Mib = 1024 * 1024;

    /// <summary>create, 4 MiB of 0x5a written and flushed, then a background writer busy further on.</summary>
    private (int Pid, string File, Process Writer) StartBusyDisk()
    {
        string file = CreateVhd("disk.vhd", 256);
        TapCtlOk("create", "-a", "vhd:" + file);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        string nbd = NbdSocket(pid, int.Parse(row["minor"], CultureInfo.InvariantCulture));
        QemuIo(nbd, "write -P 0x5a 0 4M", "flush");

        long flushedLength = new FileInfo(file).Length;
        // Rewrites of the same 200 MiB, long enough for the signal to land while it writes (it is killed anyway).
        var args = new List<string> { "-f", "raw" };
        for (int i = 0; i < 30; i++)
        {
            args.AddRange(["-c", "write -P 0x77 8M 200M"]);
        }

        args.Add(NbdUri(nbd));
        Process writer = StartHelper(ExternalTool.Require("qemu-io"), [.. args]);
        WaitUntil(() => writer.HasExited || new FileInfo(file).Length > flushedLength + (8 * Mib), "the background writer to get going");
        return (pid, file, writer);
    }

    private void AssertFlushedDataReadable(string file)
    {
        using Served served = Serve("vhd:" + file);
        QemuIoReadOnly(served.Socket, "read -P 0x5a 0 4M");
    }

    [Fact]
    public void Sigterm_WithWriterBusy_ExitsCleanly_ImageValid_FlushedDataKept()
    {
        (int pid, string file, Process writer) = StartBusyDisk();
        Signal(pid, "TERM");
        WaitForExit(pid);
        writer.WaitForExit(HangGuard);

        // SIGTERM closes every VBD cleanly (unlike the reference, which dies): the image is consistent.
        Assert.False(File.Exists(ControlSocket(pid)), "control socket left behind");
        Assert.Contains("is valid", VhdUtilOk("check", "-n", file), StringComparison.Ordinal);
        AssertFlushedDataReadable(file);
    }

    [Fact]
    public void Sigkill_WithWriterBusy_FlushedDataKept_OpensWithoutTrailingFooter()
    {
        (int pid, string file, Process writer) = StartBusyDisk();
        Signal(pid, "KILL");
        WaitForExit(pid);
        writer.WaitForExit(HangGuard);

        AssertFlushedDataReadable(file);

        // Whatever the kill left at the end of the file, the copy of the footer at offset 0 is enough to open it.
        using (FileStream f = File.OpenWrite(file))
        {
            f.Seek(-512, SeekOrigin.End);
            f.Write(new byte[512]);
        }

        AssertFlushedDataReadable(file);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sigkill_MidAllocation_ReopenedAndClosedCleanly_ImageValidDataKept(bool rewrite)
    {
        // tapdisk serve read-write: 4 MiB of 0x5a written and flushed, then killed while a writer allocates blocks.
        string file = CreateVhd("disk.vhd", 256);
        string socket = Path.Combine(Root, "killed.sock");
        Process server = StartHelper(Binaries.Tapdisk, "serve", "-s", socket, "vhd:" + file);
        WaitUntil(() => File.Exists(socket) || server.HasExited, "tapdisk serve to listen on " + socket);
        Assert.False(server.HasExited, "tapdisk serve exited early");
        QemuIo(socket, "write -P 0x5a 0 4M", "flush");
        long flushedLength = new FileInfo(file).Length;
        Process writer = StartHelper(ExternalTool.Require("qemu-io"), "-f", "raw", "-c", "write -P 0x77 8M 200M", NbdUri(socket));
        WaitUntil(() => writer.HasExited || new FileInfo(file).Length > flushedLength + (8 * Mib), "the writer to allocate blocks");
        Assert.False(writer.HasExited, "the writer finished before the kill");
        Signal(server.Id, "KILL");
        Assert.True(server.WaitForExit(HangGuard), "killed tapdisk serve did not exit");
        writer.WaitForExit(HangGuard);

        // What the kill left: no trailing footer (the allocations overwrote it), so our check rejects the file.
        using (FileStream f = File.OpenRead(file))
        {
            byte[] tail = new byte[8];
            f.Seek(-512, SeekOrigin.End);
            f.ReadExactly(tail);
            Assert.NotEqual("conectix", System.Text.Encoding.ASCII.GetString(tail));
        }

        ProcessResult crashed = VhdUtil("check", "-n", file);
        Assert.True(crashed.ExitCode == 22 && crashed.StandardOutput.StartsWith("primary footer invalid: invalid cookie", StringComparison.Ordinal), $"check of the killed image: exit {crashed.ExitCode}\n{crashed.StandardOutput}");

        // The content as the kill left it, read by qemu through the footer copy at offset 0.
        string expected = Scratch.File("expected.raw");
        QemuImg.Run("convert", "-f", "vpc", "-O", "raw", file, expected).EnsureSuccess("qemu-img convert of the killed image");

        // Reopen read-write, rewrite only sectors the image already holds (no allocation, no bitmap change), close.
        using (Served served = Serve("vhd:" + file, readOnly: false))
        {
            if (rewrite)
            {
                QemuIo(served.Socket, "write -P 0xa5 0 4M", "flush");
            }
        }

        if (rewrite)
        {
            using FileStream f = File.OpenWrite(expected);
            f.Write(Enumerable.Repeat((byte)0xa5, 4 * (int)Mib).ToArray());
        }

        Assert.Contains("is valid", VhdUtilOk("check", "-n", file), StringComparison.Ordinal);
        Assert.Contains("is valid", VhdUtilOk("check", "-n", file, "-b"), StringComparison.Ordinal);
        QemuImg.AssertVpcCheckClean(file);
        QemuImg.Run("compare", "-f", "vpc", "-F", "raw", file, expected).EnsureSuccess("qemu-img compare with the content the kill left");
    }
}
