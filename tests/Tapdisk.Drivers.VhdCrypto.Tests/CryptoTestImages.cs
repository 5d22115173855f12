using Tapdisk.Storage;

namespace Tapdisk.Drivers.VhdCrypto.Tests;

internal static class CryptoTestImages
{
    public static IBlockImage Open(string path, VhdCryptoOptions crypto, bool readOnly = false) =>
        new ImageOpener(new VhdCryptoImageDriver(crypto)).Open("vhd", path, new ImageOpenOptions { ReadOnly = readOnly, DirectIo = false });

    /// <summary>Waits for a driver call (the VHD driver completes synchronously).</summary>
    public static void Sync(ValueTask task) => task.AsTask().GetAwaiter().GetResult();

    public static byte[] ReadAll(IBlockImage image)
    {
        byte[] data = new byte[image.SizeBytes];
        for (long offset = 0; offset < data.Length; offset += 1024 * 1024)
        {
            int n = (int)Math.Min(1024 * 1024, data.Length - offset);
            image.ReadAsync(offset, data.AsMemory((int)offset, n)).AsTask().GetAwaiter().GetResult();
        }

        return data;
    }

    public static void Write(IBlockImage image, long offset, byte[] data, int chunk = 64 * 1024)
    {
        for (int done = 0; done < data.Length; done += chunk)
        {
            int n = Math.Min(chunk, data.Length - done);
            image.WriteAsync(offset + done, data.AsMemory(done, n)).AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Sector i = little-endian u64 (i + seed) repeated, like the blktap vector's plaintext.</summary>
    public static byte[] Pattern(long firstSector, int sectors, ulong seed = 0)
    {
        byte[] data = new byte[sectors * 512];
        for (int s = 0; s < sectors; s++)
        {
            for (int j = 0; j < 64; j++)
            {
                BitConverter.TryWriteBytes(data.AsSpan((s * 512) + (j * 8)), (ulong)(firstSector + s) + seed);
            }
        }

        return data;
    }
}
