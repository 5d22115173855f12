using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.VhdCrypto.Tests;

/// <summary>Keyhashes of VHDs without a batmap live in an extended attribute (data-plane.md 1.10); qemu-img makes such VHDs.</summary>
public sealed class VhdKeyhashStoreTests
{
    private static readonly byte[] s_nonce = [.. Enumerable.Range(0x80, 32).Select(i => (byte)i)];

    [Fact]
    public void Write_QemuVhdWithoutBatmap_KeyhashInXattrAndServedEncrypted()
    {
        using var dir = new TempDirectory();
        string path = dir.File("q.vhd");
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "create", "-f", "vpc", path, "16M").EnsureSuccess("qemu-img create");
        using (VhdImage plain = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }))
        {
            Assert.Null(plain.BatmapHeader);
            Assert.False(plain.KeepsFieldsInBatmap);
        }

        Assert.Null(VhdKeyhashStore.Read(path));
        using var key = new VhdKey(BlktapVector.Key);
        VhdKeyhashStore.Write(path, new VhdKeyhash(s_nonce, key.ComputeKeyhash(s_nonce)));

        // The attribute holds the raw 65-byte record: cookie 1, nonce, SHA-256(nonce ‖ key).
        byte[] record = new byte[100];
        using (SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadOnly))
        {
            Assert.Equal(65, PosixFile.GetXattr(fd, VhdExtendedAttributes.KeyhashName, record, path));
        }

        Assert.Equal(1, record[0]);
        Assert.Equal(s_nonce, record[1..33]);
        Assert.Equal(VhdKeyhash.Compute(s_nonce, BlktapVector.Key), record[33..65]);
        Assert.Equal($"{Convert.ToHexStringLower(s_nonce)} {Convert.ToHexStringLower(record.AsSpan(33, 32))}", VhdKeyhashStore.Read(path)!.ToString());

        // Written and read back through the crypto driver as plaintext ...
        byte[] data = CryptoTestImages.Pattern(0, 4200);
        using (IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key }))
        {
            CryptoTestImages.Write(image, 0, data);
        }

        using (IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key }, readOnly: true))
        {
            byte[] all = CryptoTestImages.ReadAll(image);
            Assert.True(all.AsSpan(0, data.Length).SequenceEqual(data), "decrypted read differs from what was written");
        }

        // ... while the file holds AES-XTS ciphertext, as qemu (which knows nothing of the key) reads it.
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "convert", "-f", "vpc", "-O", "raw", path, dir.File("stored.raw")).EnsureSuccess("qemu-img convert");
        byte[] stored = File.ReadAllBytes(dir.File("stored.raw"));
        byte[] expected = new byte[data.Length];
        using (var cipher = new AesXtsSectorCipher(key))
        {
            cipher.Encrypt(0, data, expected);
        }

        Assert.False(stored.AsSpan(0, 512).SequenceEqual(data.AsSpan(0, 512)), "sector 0 must be stored encrypted");
        Assert.True(stored.AsSpan(0, expected.Length).SequenceEqual(expected), "stored sectors are not the AES-XTS encryption of the plaintext");

        // The keyhash check applies as for blktap VHDs: a wrong key or no key is refused.
        using var other = new VhdKey([.. Enumerable.Range(0x40, 64).Select(i => (byte)i)]);
        Assert.Equal(Errno.ENOKEY, Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions { Key = other }, readOnly: true)).Errno);
        Assert.Equal(Errno.ENOKEY, Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions(), readOnly: true)).Errno);
    }

    [Fact]
    public void Write_QemuVhdWithAllocatedBlock_RefusedAndNoAttribute()
    {
        using var dir = new TempDirectory();
        string path = dir.File("q.vhd");
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "create", "-f", "vpc", path, "16M").EnsureSuccess("qemu-img create");
        ExternalTool.Run(ExternalTool.Require("qemu-io"), "-f", "vpc", "-c", "write -P 0x5a 0 4096", path).EnsureSuccess("qemu-io write");
        using var key = new VhdKey(BlktapVector.Key);

        var e = Assert.Throws<ImageOpenException>(() => VhdKeyhashStore.Write(path, new VhdKeyhash(s_nonce, key.ComputeKeyhash(s_nonce))));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Null(VhdKeyhashStore.Read(path));
    }

    [Fact]
    public void Open_KeyWithoutKeyhashOnQemuVhd_Einval()
    {
        using var dir = new TempDirectory();
        string path = dir.File("q.vhd");
        ExternalTool.Run(ExternalTool.Require("qemu-img"), "create", "-f", "vpc", path, "16M").EnsureSuccess("qemu-img create");
        using var key = new VhdKey(BlktapVector.Key);
        Assert.Equal(Errno.EINVAL, Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key }, readOnly: true)).Errno);
    }
}
