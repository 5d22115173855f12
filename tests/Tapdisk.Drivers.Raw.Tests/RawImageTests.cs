using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Drivers.Raw.Tests;

public sealed class RawImageTests
{
    private const int MiB = 1024 * 1024;
    private const long Size = 8L * MiB;

    [Fact]
    public void WriteRead_Patterns_RoundTripAndSurviveReopen()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        byte[] shadow = new byte[Size];
        using (RawImage image = OpenRaw(path))
        {
            Assert.Equal(Size, image.SizeBytes);
            Assert.Equal("aio", image.DriverName);
            WriteBoth(image, shadow, 0, Pattern(4096, 1));
            WriteBoth(image, shadow, 3 * MiB, Pattern(MiB, 2));
            WriteBoth(image, shadow, Size - 512, Pattern(512, 3));
            Assert.Equal(shadow, ReadAll(image));
        }

        using RawImage again = OpenRaw(path, readOnly: true);
        Assert.Equal(shadow, ReadAll(again));
    }

    [Fact]
    public void Open_DiskBackedFile_UsesODirect()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Assert.True(image.IsDirect, $"O_DIRECT on {dir.Path}");
        Assert.True(image.Limits.MinimumBlockBytes >= 512, "O_DIRECT advertises the device's logical block size");
    }

    /// <summary>
    /// tmpfs refused O_DIRECT before Linux 6.6 (then the driver must fall back to buffered I/O); newer kernels accept it.
    /// Either way IsDirect must say what the file system actually did, and I/O must work.
    /// </summary>
    [Fact]
    public void Open_Tmpfs_DirectOnlyIfAcceptedElseBuffered()
    {
        Assert.True(Directory.Exists("/dev/shm"), "this test needs tmpfs at /dev/shm");
        string path = Path.Combine("/dev/shm", "tapdisk-raw-test-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            File.WriteAllBytes(path, new byte[MiB]);
            int probe = PosixFile.TryOpen(path, OpenFlags.ReadWrite | OpenFlags.Direct, 0, out SafeFdHandle fd);
            fd.Dispose();
            Assert.True(probe is 0 or Errno.EINVAL, $"probe open of {path}: errno {probe}");
            using RawImage image = OpenRaw(path);
            Assert.Equal(probe == 0, image.IsDirect);
            byte[] data = Pattern(4096, 4);
            Run(image.WriteAsync(8192, data));
            byte[] back = new byte[4096];
            Run(image.ReadAsync(8192, back));
            Assert.Equal(data, back);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Open_DirectIoDisabled_IsBuffered()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite with { DirectIo = false });
        Assert.False(image.IsDirect);
        Run(image.WriteAsync(7, Pattern(100, 13)));
        Assert.Equal(Pattern(100, 13), File.ReadAllBytes(path).AsSpan(7, 100).ToArray());
    }

    [Fact]
    public void WriteRead_UnalignedBufferAndOffset_StillCorrect()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        byte[] shadow = new byte[Size];
        using RawImage image = OpenRaw(path);
        Assert.True(image.IsDirect);
        byte[] backing = Pattern(10000, 5);
        ReadOnlyMemory<byte> odd = backing.AsMemory(3, 3001);
        Run(image.WriteAsync(1001, odd));
        odd.Span.CopyTo(shadow.AsSpan(1001));
        Run(image.WriteAsync(MiB - 7, backing.AsMemory(1, 14)));
        backing.AsSpan(1, 14).CopyTo(shadow.AsSpan(MiB - 7));

        byte[] readBacking = new byte[9000];
        Memory<byte> into = readBacking.AsMemory(5, 5000);
        Run(image.ReadAsync(999, into));
        Assert.Equal(shadow.AsSpan(999, 5000).ToArray(), into.ToArray());
        Assert.Equal(shadow, ReadAll(image));
    }

    [Fact]
    public void Trim_WrittenRange_PunchesHoleReadingZeros()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Run(image.WriteAsync(MiB, Pattern(2 * MiB, 6)));
        AssertExtents(image, (0, MiB, ExtentFlags.Hole | ExtentFlags.Zero), (MiB, 2 * MiB, ExtentFlags.Data), (3 * MiB, Size - (3 * MiB), ExtentFlags.Hole | ExtentFlags.Zero));

        Run(image.TrimAsync(MiB, MiB));
        AssertExtents(image, (0, 2 * MiB, ExtentFlags.Hole | ExtentFlags.Zero), (2 * MiB, MiB, ExtentFlags.Data), (3 * MiB, Size - (3 * MiB), ExtentFlags.Hole | ExtentFlags.Zero));
        byte[] back = new byte[MiB];
        Run(image.ReadAsync(MiB, back));
        Assert.False(back.AsSpan().ContainsAnyExcept((byte)0));
        Assert.Equal(Size, new FileInfo(path).Length);
    }

    [Fact]
    public void Zero_WithoutNoHole_DeallocatesAndReadsZeros()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Run(image.WriteAsync(0, Pattern(4 * MiB, 7)));
        long allocatedBefore = AllocatedBytes(path);
        Run(image.ZeroAsync(MiB, 2 * MiB));
        AssertZeros(image, MiB, 2 * MiB);
        Assert.True(AllocatedBytes(path) <= allocatedBefore - (2 * MiB), "the zeroed range was deallocated");
        AssertExtents(image, (0, MiB, ExtentFlags.Data), (MiB, 2 * MiB, ExtentFlags.Hole | ExtentFlags.Zero), (3 * MiB, MiB, ExtentFlags.Data), (4 * MiB, Size - (4 * MiB), ExtentFlags.Hole | ExtentFlags.Zero));
    }

    [Fact]
    public void Zero_WithNoHole_KeepsAllocationAndReadsZeros()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Run(image.WriteAsync(0, Pattern(4 * MiB, 8)));
        long allocatedBefore = AllocatedBytes(path);
        Run(image.ZeroAsync(MiB, 2 * MiB, ZeroFlags.NoHole | ZeroFlags.Fua));
        AssertZeros(image, MiB, 2 * MiB);
        Assert.True(AllocatedBytes(path) >= allocatedBefore, "NO_HOLE keeps the range allocated");
        byte[] head = new byte[MiB];
        Run(image.ReadAsync(0, head));
        Assert.Equal(Pattern(4 * MiB, 8).AsSpan(0, MiB).ToArray(), head);
    }

    [Fact]
    public void Write_Fua_CompletesWithDataReadable()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Assert.True(image.Capabilities.HasFlag(ImageCapabilities.Fua));
        byte[] data = Pattern(65536, 9);
        Run(image.WriteAsync(MiB, data, WriteFlags.Fua));
        Run(image.FlushAsync());
        Assert.Equal(data, File.ReadAllBytes(path).AsSpan(MiB, data.Length).ToArray());
    }

    [Fact]
    public void GetExtents_SparseFile_ReportsHolesAndData()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        using RawImage image = OpenRaw(path);
        Assert.True(image.Capabilities.HasFlag(ImageCapabilities.Extents));
        AssertExtents(image, (0, Size, ExtentFlags.Hole | ExtentFlags.Zero));
        Run(image.WriteAsync(2 * MiB, Pattern(65536, 10)));
        Run(image.WriteAsync(Size - 4096, Pattern(4096, 11)));
        AssertExtents(
            image,
            (0, 2 * MiB, ExtentFlags.Hole | ExtentFlags.Zero),
            (2 * MiB, 65536, ExtentFlags.Data),
            ((2 * MiB) + 65536, Size - 4096 - (2 * MiB) - 65536, ExtentFlags.Hole | ExtentFlags.Zero),
            (Size - 4096, 4096, ExtentFlags.Data));

        var partial = new ExtentList();
        Run(image.GetExtentsAsync((2 * MiB) + 4096, 8192, partial));
        Assert.Equal([new ImageExtent((2 * MiB) + 4096, 8192, ExtentFlags.Data)], partial.AsSpan().ToArray());
    }

    [Fact]
    public void Open_ReadOnly_RefusesWritesWithEperm()
    {
        using var dir = new TempDirectory();
        string path = CreateSparse(dir, "r.raw", Size);
        File.WriteAllBytes(path, Pattern((int)Size, 12));
        using IBlockImage image = new ImageOpener(new RawImageDriver()).Open("aio", path, ImageOpenOptions.ReadOnlyDefault);
        Assert.True(image.IsReadOnly);
        Assert.False(image.Capabilities.HasFlag(ImageCapabilities.Write));
        Action[] writes =
        [
            () => Run(image.WriteAsync(0, new byte[512])),
            () => Run(image.TrimAsync(0, 4096)),
            () => Run(image.ZeroAsync(0, 4096)),
        ];
        foreach (Action write in writes)
        {
            var e = Assert.Throws<ErrnoIOException>(write);
            Assert.Equal(Errno.EPERM, e.Errno);
        }

        Assert.Equal(Pattern((int)Size, 12), File.ReadAllBytes(path));
    }

    private static RawImage OpenRaw(string path, bool readOnly = false) =>
        RawImage.Open(path, readOnly ? ImageOpenOptions.ReadOnlyDefault : ImageOpenOptions.ReadWrite);

    private static string CreateSparse(TempDirectory dir, string name, long size)
    {
        string path = dir.File(name);
        using var f = new FileStream(path, FileMode.CreateNew);
        f.SetLength(size);
        return path;
    }

    private static byte[] Pattern(int length, int seed)
    {
        byte[] b = new byte[length];
        new Random(seed).NextBytes(b);
        b[0] = (byte)(seed | 1);
        return b;
    }

    private static void Run(ValueTask operation) => operation.AsTask().GetAwaiter().GetResult();

    private static void WriteBoth(RawImage image, byte[] shadow, long offset, byte[] data)
    {
        Run(image.WriteAsync(offset, data));
        data.CopyTo(shadow, offset);
    }

    private static byte[] ReadAll(RawImage image)
    {
        byte[] all = new byte[image.SizeBytes];
        Run(image.ReadAsync(0, all));
        return all;
    }

    private static void AssertZeros(RawImage image, long offset, int length)
    {
        byte[] back = new byte[length];
        Run(image.ReadAsync(offset, back));
        Assert.False(back.AsSpan().ContainsAnyExcept((byte)0));
    }

    private static long AllocatedBytes(string path)
    {
        using ImageFile file = ImageFile.Open(path, readOnly: true, direct: false);
        return file.Status.AllocatedBytes;
    }

    private static void AssertExtents(RawImage image, params (long Offset, long Length, ExtentFlags Flags)[] expected)
    {
        var extents = new ExtentList();
        Run(image.GetExtentsAsync(0, image.SizeBytes, extents));
        Assert.Equal(expected.Select(e => new ImageExtent(e.Offset, e.Length, e.Flags)).ToArray(), extents.AsSpan().ToArray());
    }
}
