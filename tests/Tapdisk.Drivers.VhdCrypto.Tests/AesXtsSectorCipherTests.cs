using System.Security.Cryptography;
using Xunit;

namespace Tapdisk.Drivers.VhdCrypto.Tests;

public sealed class AesXtsSectorCipherTests
{
    [Theory]
    [InlineData(32, 0L, 1)]
    [InlineData(64, 0L, 8)]
    [InlineData(64, 4095L, 3)]
    [InlineData(32, 0xFFFF_FFFEL, 4)] // crosses 2^32: the tweak is the sector modulo 2^32 ("plain")
    [InlineData(64, 0x1_2345_6789L, 2)]
    public void Encrypt_MatchesTheEcbReference(int keyBytes, long firstSector, int sectors)
    {
        byte[] keyValue = RandomNumberGenerator.GetBytes(keyBytes);
        using var key = new VhdKey(keyValue);
        using var cipher = new AesXtsSectorCipher(key);
        using var reference = new AesXtsEcbReference(keyValue);
        byte[] plain = RandomNumberGenerator.GetBytes(sectors * 512);

        byte[] ours = new byte[plain.Length];
        byte[] theirs = new byte[plain.Length];
        cipher.Encrypt(firstSector, plain, ours);
        reference.Encrypt(firstSector, plain, theirs);
        Assert.Equal(theirs, ours);

        cipher.Decrypt(firstSector, ours);
        Assert.Equal(plain, ours);
    }

    [Fact]
    public void Encrypt_SectorNumberIsTruncatedToThirtyTwoBits()
    {
        byte[] keyValue = RandomNumberGenerator.GetBytes(64);
        using var key = new VhdKey(keyValue);
        using var cipher = new AesXtsSectorCipher(key);
        byte[] plain = RandomNumberGenerator.GetBytes(512);
        byte[] low = new byte[512];
        byte[] high = new byte[512];
        cipher.Encrypt(7, plain, low);
        cipher.Encrypt(7 + (1L << 32), plain, high);
        Assert.Equal(low, high);
    }

    [Fact]
    public void Encrypt_BlktapVectorSectorZero_MatchesTheStoredCiphertext()
    {
        using var key = new VhdKey(BlktapVector.Key);
        using var cipher = new AesXtsSectorCipher(key);
        byte[] ct = new byte[512];
        cipher.Encrypt(0, BlktapVector.Plaintext.AsSpan(0, 512), ct);

        // Block 0's data starts one bitmap sector after BAT entry 0x7 (data-plane.md 4.5).
        byte[] file = File.ReadAllBytes(BlktapVector.EncryptedVhd);
        Assert.Equal(file.AsSpan(8 * 512, 512).ToArray(), ct);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(48)]
    public void Create_WrongKeyLength_Throws(int length)
    {
        using var key = new VhdKey(new byte[length]);
        Assert.Throws<ArgumentException>(() => new AesXtsSectorCipher(key));
    }

    [Fact]
    public void Create_EqualKeyHalves_Throws()
    {
        byte[] half = RandomNumberGenerator.GetBytes(16);
        using var key = new VhdKey([.. half, .. half]);
        var e = Assert.Throws<ArgumentException>(() => new AesXtsSectorCipher(key));
        Assert.DoesNotContain(Convert.ToHexStringLower(half), e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Concurrent_ManyThreads_AllResultsCorrect()
    {
        byte[] keyValue = RandomNumberGenerator.GetBytes(64);
        using var key = new VhdKey(keyValue);
        using var cipher = new AesXtsSectorCipher(key);
        using var reference = new AesXtsEcbReference(keyValue);
        byte[] plain = RandomNumberGenerator.GetBytes(64 * 512);
        byte[] expected = new byte[plain.Length];
        reference.Encrypt(1000, plain, expected);

        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 24 }, _ =>
        {
            byte[] ct = new byte[plain.Length];
            cipher.Encrypt(1000, plain, ct);
            Assert.Equal(expected, ct);
            cipher.Decrypt(1000, ct);
            Assert.Equal(plain, ct);
        });
    }

    [Fact]
    public void Dispose_ThenUse_Throws()
    {
        using var key = new VhdKey(RandomNumberGenerator.GetBytes(32));
        var cipher = new AesXtsSectorCipher(key);
        cipher.Dispose();
        Assert.Throws<ObjectDisposedException>(() => cipher.Decrypt(0, new byte[512]));
    }
}
