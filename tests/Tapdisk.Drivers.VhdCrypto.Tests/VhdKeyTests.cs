using System.Reflection;
using Xunit;

namespace Tapdisk.Drivers.VhdCrypto.Tests;

public sealed class VhdKeyTests
{
    [Fact]
    public void Dispose_ZeroesTheKeyMaterial()
    {
        byte[] value = [.. Enumerable.Range(1, 64).Select(i => (byte)i)];
        var key = new VhdKey(value);
        byte[] inner = (byte[])typeof(VhdKey).GetField("_bytes", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(key)!;
        Assert.Equal(value, inner);

        key.Dispose();
        Assert.True(inner.AsSpan().IndexOfAnyExcept((byte)0) < 0, "key bytes must be zeroed on dispose");
        Assert.Throws<ObjectDisposedException>(() => key.Bytes.Length);
    }

    [Fact]
    public void ToString_NeverShowsTheKey()
    {
        byte[] value = [.. Enumerable.Range(0xA0, 32).Select(i => (byte)i)];
        using var key = new VhdKey(value);
        string text = key.ToString() + new VhdCryptoOptions { Key = key };
        Assert.DoesNotContain(Convert.ToHexStringLower(value), text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("redacted", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Keyhash_BlktapVector_MatchesTheStoredHash()
    {
        VhdKeyhash keyhash = VhdKeyhashStore.Read(BlktapVector.EncryptedVhd)!;
        Assert.Equal("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", Convert.ToHexStringLower(keyhash.Nonce));
        Assert.Equal("8f22ceb04e0141ceeec585822ba649918a6f0693971f9b9bc0c73bbbdd60374d", Convert.ToHexStringLower(keyhash.Hash));
        Assert.True(keyhash.Matches(BlktapVector.Key));
        Assert.False(keyhash.Matches(BlktapVector.Key.AsSpan(0, 32)));
    }

    [Fact]
    public void KeyBaseName_CutsAtTheFirstVhd()
    {
        Assert.Equal("disk", VhdKeyDirectory.KeyBaseName("/x/y/disk.vhd"));
        Assert.Equal("disk", VhdKeyDirectory.KeyBaseName("disk.vhd.snap.vhd"));
        Assert.Equal("disk,aes-xts-plain,512.key", VhdKeyDirectory.KeyFileName("/a/disk.vhd", 512));
    }
}
