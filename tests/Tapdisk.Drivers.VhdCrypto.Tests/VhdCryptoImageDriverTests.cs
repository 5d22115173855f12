using System.Security.Cryptography;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.VhdCrypto.Tests;

public sealed class VhdCryptoImageDriverTests
{
    private static readonly byte[] s_otherKey = [.. Enumerable.Range(0x40, 64).Select(i => (byte)i)];

    [Fact]
    public void Open_BlktapVectorWithKey_ReadsPlaintextByteForByte()
    {
        using var key = new VhdKey(BlktapVector.Key);
        using IBlockImage image = CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { Key = key }, readOnly: true);

        byte[] all = CryptoTestImages.ReadAll(image);
        byte[] plain = BlktapVector.Plaintext;
        Assert.Equal(BlktapVector.DiskBytes, all.Length);
        Assert.True(all.AsSpan(0, plain.Length).SequenceEqual(plain), "decrypted data differs from blktap's plaintext");
        Assert.True(all.AsSpan(plain.Length).IndexOfAnyExcept((byte)0) < 0, "unallocated tail must read as zeros, not decrypted zeros");
    }

    [Fact]
    public void Open_BlktapVectorWithKey_UnalignedSubSectorSpansReadCorrectly()
    {
        using var key = new VhdKey(BlktapVector.Key);
        using IBlockImage image = CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { Key = key }, readOnly: true);
        byte[] plain = BlktapVector.Plaintext;

        // A read crossing the 2 MiB block boundary, starting at sector 4090.
        byte[] piece = new byte[12 * 512];
        CryptoTestImages.Sync(image.ReadAsync(4090 * 512, piece));
        Assert.True(piece.AsSpan().SequenceEqual(plain.AsSpan(4090 * 512, piece.Length)));
    }

    [Fact]
    public void Write_PlaintextToBlktapEmptyKeyedCopy_ProducesBlktapsDataSectors()
    {
        using var dir = new TempDirectory();
        string ours = dir.File("enc.vhd");
        File.Copy(BlktapVector.EmptyKeyedVhd, ours);
        using (var key = new VhdKey(BlktapVector.Key))
        using (IBlockImage image = CryptoTestImages.Open(ours, new VhdCryptoOptions { Key = key }))
        {
            CryptoTestImages.Write(image, 0, BlktapVector.Plaintext);
        }

        // Same stored ciphertext for every virtual sector (raw access on both files) ...
        byte[] theirsRaw, oursRaw;
        using (IBlockImage theirs = CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { AllowCiphertext = true }, readOnly: true))
        {
            theirsRaw = CryptoTestImages.ReadAll(theirs);
        }

        using (IBlockImage mine = CryptoTestImages.Open(ours, new VhdCryptoOptions { AllowCiphertext = true }, readOnly: true))
        {
            oursRaw = CryptoTestImages.ReadAll(mine);
        }

        Assert.True(theirsRaw.AsSpan().SequenceEqual(oursRaw), "stored ciphertext differs from blktap's");
        Assert.False(theirsRaw.AsSpan(0, 512).SequenceEqual(BlktapVector.Plaintext.AsSpan(0, 512)), "sector 0 must be stored encrypted");

        // ... at the same file offsets: blocks are allocated where blktap put them, so the data areas are byte-identical.
        using VhdImage a = VhdImage.OpenSingle(BlktapVector.EncryptedVhd, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        using VhdImage b = VhdImage.OpenSingle(ours, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        Assert.Equal(Enumerable.Range(0, a.BlockCount).Select(a.GetBatEntry), Enumerable.Range(0, b.BlockCount).Select(b.GetBatEntry));
        byte[] fileA = File.ReadAllBytes(BlktapVector.EncryptedVhd);
        byte[] fileB = File.ReadAllBytes(ours);
        for (int block = 0; block < a.BlockCount; block++)
        {
            uint entry = a.GetBatEntry(block);
            if (entry == VhdLayout.Unallocated)
            {
                continue;
            }

            int start = (int)entry * 512;
            int length = 512 + a.BlockSizeBytes; // bitmap sector + data
            Assert.True(fileA.AsSpan(start, length).SequenceEqual(fileB.AsSpan(start, length)), $"block {block} at sector {entry} differs");
        }
    }

    [Fact]
    public void Open_WrongKey_RefusedWithEnokeyAndNoKeyInMessage()
    {
        using var key = new VhdKey(s_otherKey);
        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { Key = key }, readOnly: true));
        Assert.Equal(Errno.ENOKEY, e.Errno);
        Assert.Contains("enc.vhd", e.Message, StringComparison.Ordinal);
        AssertNoKeyIn(e.ToString(), s_otherKey);
        AssertNoKeyIn(e.ToString(), BlktapVector.Key);
    }

    [Fact]
    public void Open_ThirtyTwoByteKeyOnSixtyFourByteKeyhash_RefusedWithEnokey()
    {
        using var key = new VhdKey(BlktapVector.Key.AsSpan(0, 32));
        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { Key = key }, readOnly: true));
        Assert.Equal(Errno.ENOKEY, e.Errno);
    }

    [Fact]
    public void Open_KeyedImageWithoutKey_RefusedWithEnokey()
    {
        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions(), readOnly: true));
        Assert.Equal(Errno.ENOKEY, e.Errno);
        Assert.Contains("refusing to serve ciphertext", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_AllowCiphertext_ReturnsTheStoredSectors()
    {
        using IBlockImage image = CryptoTestImages.Open(BlktapVector.EncryptedVhd, new VhdCryptoOptions { AllowCiphertext = true }, readOnly: true);
        byte[] sector0 = new byte[512];
        CryptoTestImages.Sync(image.ReadAsync(0, sector0));

        using VhdImage raw = VhdImage.OpenSingle(BlktapVector.EncryptedVhd, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        long dataStart = ((long)raw.GetBatEntry(0) + 1) * 512;
        byte[] stored = File.ReadAllBytes(BlktapVector.EncryptedVhd).AsSpan((int)dataStart, 512).ToArray();
        Assert.Equal(stored, sector0);
        Assert.NotEqual(BlktapVector.Plaintext.AsSpan(0, 512).ToArray(), sector0);
    }

    [Fact]
    public void Open_KeyOnImageWithoutKeyhash_RefusedWithEinval()
    {
        using var dir = new TempDirectory();
        string path = dir.File("plain.vhd");
        VhdCreator.CreateDynamic(path, 8 * 1024 * 1024);
        using var key = new VhdKey(BlktapVector.Key);
        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key }));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("no keyhash", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_UnkeyedImageWithoutKey_OpensInClear()
    {
        using var dir = new TempDirectory();
        string path = dir.File("plain.vhd");
        VhdCreator.CreateDynamic(path, 8 * 1024 * 1024);
        byte[] data = CryptoTestImages.Pattern(10, 8);
        using (IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions()))
        {
            CryptoTestImages.Write(image, 10 * 512, data);
            Assert.False(((VhdImage)image).IsEncrypted);
        }

        using VhdImage raw = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        byte[] back = new byte[data.Length];
        CryptoTestImages.Sync(raw.ReadAsync(10 * 512, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public void Open_KeyDirectory_FindsTheKeyByImageName()
    {
        using var dir = new TempDirectory();
        string keys = Directory.CreateDirectory(dir.File("keys")).FullName;
        string path = dir.File("enc.vhd");
        File.Copy(BlktapVector.EncryptedVhd, path);
        File.Copy(BlktapVector.KeyFile, Path.Combine(keys, "enc,aes-xts-plain,512.key"));

        var crypto = new VhdCryptoOptions { KeyDirectory = new VhdKeyDirectory([dir.File("empty-dir-that-does-not-exist"), keys], strict: true) };
        using IBlockImage image = CryptoTestImages.Open(path, crypto, readOnly: true);
        byte[] all = CryptoTestImages.ReadAll(image);
        Assert.True(all.AsSpan(0, 3 * 1024 * 1024).SequenceEqual(BlktapVector.Plaintext));
    }

    [Fact]
    public void Open_KeyDirectoryWithWrongKeyFile_RefusedWithEnokey()
    {
        using var dir = new TempDirectory();
        string keys = Directory.CreateDirectory(dir.File("keys")).FullName;
        string path = dir.File("enc.vhd");
        File.Copy(BlktapVector.EncryptedVhd, path);
        File.WriteAllBytes(Path.Combine(keys, "enc,aes-xts-plain,512.key"), s_otherKey);

        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions { KeyDirectory = new VhdKeyDirectory([keys], strict: true) }, readOnly: true));
        Assert.Equal(Errno.ENOKEY, e.Errno);
        AssertNoKeyIn(e.ToString(), s_otherKey);
    }

    [Fact]
    public void Open_StrictKeyDirectoryWithKeyFileForUnkeyedImage_RefusedWithEacces()
    {
        using var dir = new TempDirectory();
        string keys = Directory.CreateDirectory(dir.File("keys")).FullName;
        string path = dir.File("disk.vhd");
        VhdCreator.CreateDynamic(path, 8 * 1024 * 1024);
        File.WriteAllBytes(Path.Combine(keys, "disk,aes-xts-plain,256.key"), s_otherKey.AsSpan(0, 32).ToArray());

        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(path, new VhdCryptoOptions { KeyDirectory = new VhdKeyDirectory([keys], strict: true) }));
        Assert.Equal(Errno.EACCES, e.Errno);

        // Without an explicit directory (the lenient default) the stray key file is ignored.
        using IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions { KeyDirectory = new VhdKeyDirectory([keys], strict: false) });
        Assert.False(((VhdImage)image).IsEncrypted);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    public void Chain_KeyhashInEveryLayer_EachLayerEncryptsItsOwnSectors(int keyBytes)
    {
        using var dir = new TempDirectory();
        byte[] keyBytesValue = RandomNumberGenerator.GetBytes(keyBytes);
        using var key = new VhdKey(keyBytesValue);
        string parent = dir.File("base.vhd");
        string child = dir.File("leaf.vhd");
        VhdCreator.CreateDynamic(parent, 8 * 1024 * 1024);
        byte[] nonce = RandomNumberGenerator.GetBytes(32);
        VhdKeyhashStore.Write(parent, new VhdKeyhash(nonce, VhdKeyhash.Compute(nonce, keyBytesValue)));

        byte[] baseData = CryptoTestImages.Pattern(0, 8192, seed: 1000);
        using (IBlockImage image = CryptoTestImages.Open(parent, new VhdCryptoOptions { Key = key }))
        {
            CryptoTestImages.Write(image, 0, baseData, chunk: 1024 * 1024 + 4096);
        }

        // The snapshot inherits the parent's keyhash, as vhd-util snapshot does.
        VhdCreator.CreateDifferencing(child, parent);
        Assert.Equal(VhdKeyhashStore.Read(parent)!.ToString(), VhdKeyhashStore.Read(child)!.ToString());

        byte[] leafData = CryptoTestImages.Pattern(4000, 200, seed: 77);
        using (IBlockImage image = CryptoTestImages.Open(child, new VhdCryptoOptions { Key = key }))
        {
            CryptoTestImages.Write(image, 4000 * 512, leafData, chunk: 3 * 512);
        }

        byte[] expected = (byte[])baseData.Clone();
        leafData.CopyTo(expected, 4000 * 512);
        using (IBlockImage image = CryptoTestImages.Open(child, new VhdCryptoOptions { Key = key }, readOnly: true))
        {
            Assert.IsType<VhdImage>(image.Parent);
            Assert.True(((VhdImage)image.Parent!).IsEncrypted);
            byte[] got = CryptoTestImages.ReadAll(image);
            int diff = got.AsSpan().CommonPrefixLength(expected);
            Assert.True(diff == expected.Length, $"first difference at byte {diff} (sector {diff / 512})");
        }

        // Each layer's stored sectors are its own ciphertext: raw access shows no plaintext in either.
        using (IBlockImage raw = CryptoTestImages.Open(child, new VhdCryptoOptions { AllowCiphertext = true }, readOnly: true))
        {
            byte[] stored = CryptoTestImages.ReadAll(raw);
            Assert.False(stored.AsSpan(4000 * 512, 512).SequenceEqual(leafData.AsSpan(0, 512)));
            Assert.False(stored.AsSpan(0, 512).SequenceEqual(baseData.AsSpan(0, 512)));

            // Same key, same tweak (the virtual sector): the reference cipher decrypts any layer's sector.
            using var reference = new AesXtsEcbReference(keyBytesValue);
            byte[] decrypted = new byte[512];
            reference.Decrypt(4000, stored.AsSpan(4000 * 512, 512), decrypted);
            Assert.Equal(leafData.AsSpan(0, 512).ToArray(), decrypted);
        }
    }

    [Fact]
    public void Chain_LayerWithoutKeyhashUnderKeyedLeaf_RefusedWithEinval()
    {
        using var dir = new TempDirectory();
        byte[] keyValue = RandomNumberGenerator.GetBytes(64);
        using var key = new VhdKey(keyValue);
        string parent = dir.File("base.vhd");
        string child = dir.File("leaf.vhd");
        VhdCreator.CreateDynamic(parent, 8 * 1024 * 1024);
        VhdCreator.CreateDifferencing(child, parent);
        byte[] nonce = new byte[32];
        VhdKeyhashStore.Write(child, new VhdKeyhash(nonce, VhdKeyhash.Compute(nonce, keyValue)));

        var e = Assert.Throws<ImageOpenException>(() => CryptoTestImages.Open(child, new VhdCryptoOptions { Key = key }));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("base.vhd", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ZeroAndTrim_OnEncryptedImage_ReadZerosAndKeepData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("z.vhd");
        File.Copy(BlktapVector.EncryptedVhd, path);
        using var key = new VhdKey(BlktapVector.Key);
        using IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key });
        Assert.Equal(ImageCapabilities.None, image.Capabilities & (ImageCapabilities.FastZero | ImageCapabilities.Trim));

        CryptoTestImages.Sync(image.ZeroAsync(512 * 100, 512 * 50));
        CryptoTestImages.Sync(image.TrimAsync(512 * 200, 512 * 50));
        byte[] all = CryptoTestImages.ReadAll(image);
        byte[] expected = BlktapVector.Plaintext;
        Array.Clear(expected, 512 * 100, 512 * 50);
        Assert.True(all.AsSpan(0, expected.Length).SequenceEqual(expected));
    }

    [Fact]
    public void Write_DoesNotModifyTheCallersBuffer()
    {
        using var dir = new TempDirectory();
        string path = dir.File("w.vhd");
        File.Copy(BlktapVector.EmptyKeyedVhd, path);
        using var key = new VhdKey(BlktapVector.Key);
        using IBlockImage image = CryptoTestImages.Open(path, new VhdCryptoOptions { Key = key });
        byte[] data = CryptoTestImages.Pattern(0, 16);
        byte[] copy = (byte[])data.Clone();
        CryptoTestImages.Sync(image.WriteAsync(0, data));
        Assert.Equal(copy, data);
    }

    private static void AssertNoKeyIn(string text, byte[] key)
    {
        Assert.DoesNotContain(Convert.ToHexStringLower(key), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToHexStringLower(key.AsSpan(0, 16)), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToBase64String(key), text, StringComparison.Ordinal);
    }
}
