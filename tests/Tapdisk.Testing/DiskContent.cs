using System.Security.Cryptography;
using Tapdisk.Storage;
using Xunit;

namespace Tapdisk.Testing;

/// <summary>Disk contents for image tests: deterministic patterns, whole-disk reads, hashes and first-difference comparison.</summary>
public static class DiskContent
{
    private const int MiB = 1024 * 1024;

    /// <summary>A deterministic pattern for a seed (never all zeros).</summary>
    public static byte[] Pattern(int length, int seed)
    {
        byte[] b = new byte[length];
        new Random(seed).NextBytes(b);
        b[0] = (byte)(seed | 1);
        return b;
    }

    /// <summary>Reads the whole virtual disk in 1 MiB requests.</summary>
    public static byte[] ReadAll(IBlockImage image)
    {
        byte[] all = new byte[image.SizeBytes];
        for (long at = 0; at < all.Length; at += MiB)
        {
            int n = (int)Math.Min(MiB, all.Length - at);
            image.ReadAsync(at, all.AsMemory((int)at, n)).AsTask().GetAwaiter().GetResult();
        }

        return all;
    }

    public static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Asserts two disk images are equal, reporting the first differing offset rather than a megabyte dump.</summary>
    public static void AssertSame(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int diff = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(diff == expected.Length, $"{what}: first difference at byte {diff} (0x{diff:x}): expected 0x{(diff < expected.Length ? expected[diff] : 0):x2}, got 0x{(diff < actual.Length ? actual[diff] : 0):x2}");
    }
}
