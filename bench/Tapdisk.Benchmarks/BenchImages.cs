using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// The 1 GiB images the suites run on, under /var/tmp (disk-backed, unlike a tmpfs /tmp). Each is written in full
/// once and reused by later processes (BDN runs every case in a fresh process); a ".ready" marker says it is complete.
/// Override the folder with TAPDISK_BENCH_DIR, or its parent with TAPDISK_TEST_TMP (the tests' disk-backed scratch root).
/// </summary>
internal static class BenchImages
{
    public const long SizeBytes = 1L << 30;
    private const int ChunkBytes = 1024 * 1024;

    public static string Folder =>
        Environment.GetEnvironmentVariable("TAPDISK_BENCH_DIR") is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("TAPDISK_TEST_TMP") is { Length: > 0 } tmp ? tmp : "/var/tmp", "tapdisk-bench");

    public static ImageOpener Opener { get; } = new(new Drivers.Raw.RawImageDriver(), new VhdImageDriver());

    /// <summary>A raw file of <see cref="SizeBytes"/> with every byte written (no holes, no unwritten extents).</summary>
    public static string PrepareRaw()
    {
        string path = Path.Combine(Folder, "raw-1g.img");
        if (IsReady(path) && new FileInfo(path).Length == SizeBytes)
        {
            return path;
        }

        Unready(path);
        byte[] chunk = Pattern();
        using (FileStream stream = new(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
        {
            for (long done = 0; done < SizeBytes; done += ChunkBytes)
            {
                stream.Write(chunk);
            }

            stream.Flush(flushToDisk: true);
        }

        MarkReady(path);
        return path;
    }

    /// <summary>A dynamic VHD of <see cref="SizeBytes"/> whose every block is allocated and fully written.</summary>
    public static string PrepareVhd()
    {
        string path = Path.Combine(Folder, "vhd-dynamic-1g.vhd");
        if (IsReady(path) && IsFullyAllocated(path))
        {
            return path;
        }

        Unready(path);
        VhdCreator.CreateDynamic(path, SizeBytes);
        ReadOnlyMemory<byte> chunk = Pattern();
        ImageOpenOptions options = ImageOpenOptions.ReadWrite with { DirectIo = false, SafeAllocation = false };
        using (VhdImage image = VhdImage.OpenSingle(path, options))
        {
            for (long offset = 0; offset < SizeBytes; offset += ChunkBytes)
            {
                Sync.Complete(image.WriteAsync(offset, chunk));
            }

            Sync.Complete(image.FlushAsync());
        }

        if (!IsFullyAllocated(path))
        {
            throw new InvalidOperationException($"{path}: not every block is allocated after writing the whole disk");
        }

        MarkReady(path);
        return path;
    }

    /// <summary>A fresh, empty dynamic VHD (for first-write allocation), replacing any file at <paramref name="name"/>.</summary>
    public static string CreateEmptyVhd(string name)
    {
        string path = Path.Combine(Folder, name);
        Directory.CreateDirectory(Folder);
        VhdCreator.CreateDynamic(path, SizeBytes);
        return path;
    }

    /// <summary>Non-zero, non-repeating-per-sector bytes, so no layer can take a zero-page shortcut.</summary>
    public static byte[] Pattern()
    {
        byte[] bytes = new byte[ChunkBytes];
        new Random(20240521).NextBytes(bytes);
        return bytes;
    }

    private static bool IsFullyAllocated(string path)
    {
        try
        {
            using VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
            return image.SizeBytes == SizeBytes && image.BlockCount > 0 && image.AllocatedBlockCount == image.BlockCount;
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException)
        {
            return false;
        }
    }

    private static bool IsReady(string path) => File.Exists(path) && File.Exists(path + ".ready");

    private static void Unready(string path)
    {
        Directory.CreateDirectory(Folder);
        File.Delete(path + ".ready");
    }

    private static void MarkReady(string path) => File.WriteAllText(path + ".ready", DateTime.UtcNow.ToString("O"));
}
