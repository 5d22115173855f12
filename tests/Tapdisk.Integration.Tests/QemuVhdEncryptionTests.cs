using System.Diagnostics;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// A VHD made by qemu-img has no blktap batmap, so its keyhash lives in an extended attribute (data-plane.md 1.10):
/// vhd-util key -s writes it there, and tapdisk serve -k checks it and serves the image encrypted.
/// </summary>
public sealed class QemuVhdEncryptionTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    [Fact]
    public void QemuImgVhd_KeyedByVhdUtil_ServedEncryptedByTapdisk()
    {
        string image = Scratch.File("q.vhd");
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "create", "-f", "vpc", image, "16M").EnsureSuccess("qemu-img create");
        string key = Scratch.File("q,aes-xts-plain,512.key");
        File.WriteAllBytes(key, [.. Enumerable.Range(0x21, 64).Select(i => (byte)i)]);
        string wrong = Scratch.File("q,aes-xts-plain,256.key");
        File.WriteAllBytes(wrong, [.. Enumerable.Range(0x61, 32).Select(i => (byte)i)]);

        VhdUtilOk("key", "-s", "-n", image, "-k", key);
        Assert.Equal(0, VhdUtil("key", "-c", "-n", image, "-k", key).ExitCode);

        using (Served served = ServeWith(image, readOnly: false, "-k", key))
        {
            QemuIo(served.Socket, "write -P 0x5a 1M 64k", "write -P 0xa5 9M 4k", "flush", "read -P 0x5a 1M 64k");
        }

        // qemu-img knows nothing of the key: it reads the stored sectors, which must not be the plaintext.
        string stored = Scratch.File("stored.raw");
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "convert", "-f", "vpc", "-O", "raw", image, stored).EnsureSuccess("qemu-img convert");
        byte[] raw = File.ReadAllBytes(stored);
        Assert.True(raw.AsSpan(Mib, 64 * 1024).IndexOfAnyExcept((byte)0x5a) >= 0, "the written range is stored as plaintext");
        Assert.True(raw.AsSpan(Mib, 64 * 1024).IndexOfAnyExcept((byte)0) >= 0, "the written range was not stored at all");
        Assert.True(raw.AsSpan(9 * Mib, 4096).IndexOfAnyExcept((byte)0xa5) >= 0, "the written range is stored as plaintext");

        using (Served served = ServeWith(image, readOnly: true, "-k", key))
        {
            QemuIoReadOnly(served.Socket, "read -P 0x5a 1M 64k", "read -P 0xa5 9M 4k", "read -P 0 0 1M");
        }

        using (Served served = ServeWith(image, readOnly: true, "--raw-ciphertext"))
        {
            QemuIoReadOnly(served.Socket, "read -P 0 0 1M");
        }

        ProcessResult refused = ExternalTool.Run(Binaries.Tapdisk, ["serve", "-s", Path.Combine(Root, "wrong.sock"), "-R", "-k", wrong, "vhd:" + image], stdin: null, HangGuard, Environment);
        Assert.Equal(126, refused.ExitCode);
    }

    private Served ServeWith(string image, bool readOnly, params string[] options)
    {
        string socket = Path.Combine(Root, "s" + Guid.NewGuid().ToString("N")[..6] + ".sock");
        string[] args = readOnly ? ["serve", "-s", socket, "-R", .. options, "vhd:" + image] : ["serve", "-s", socket, .. options, "vhd:" + image];
        Process p = StartHelper(Binaries.Tapdisk, args);
        WaitUntil(() => File.Exists(socket) || p.HasExited, "tapdisk serve to listen on " + socket);
        Assert.False(p.HasExited, $"tapdisk serve {string.Join(' ', args)} exited");
        return new Served(p, socket);
    }
}
