using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Differencing chains against a raw shadow model (data-plane.md 1.7, 1.8, 2.2, 2.4, 2.5).</summary>
public sealed class VhdImageChainTests
{
    private const long Size = 16L * MiB;

    [Fact]
    public void Differencing_OverlappingWrites_ReadsMergeOfChildAndParent()
    {
        using var dir = new TempDirectory();
        string parent = dir.File("p.vhd");
        string child = dir.File("c.vhd");
        byte[] shadow = new byte[Size];
        bool[] written = new bool[Size / 512];
        VhdCreator.CreateDynamic(parent, Size);
        using (IBlockImage p = Open(parent))
        {
            WriteTracked(p, shadow, written, MiB, Pattern(64 * 1024, 20));
            WriteTracked(p, shadow, written, 4 * MiB, Pattern(2 * MiB, 21));
            WriteTracked(p, shadow, written, Size - 4096, Pattern(4096, 22));
        }

        VhdCreator.CreateDifferencing(child, parent);
        using (IBlockImage c = Open(child))
        {
            Assert.NotNull(c.Parent);
            AssertSameContent(shadow, ReadAll(c), "fresh child reads the parent");
            WriteTracked(c, shadow, written, MiB + 32768, Pattern(65536, 23));          // overlaps the parent's tail
            WriteTracked(c, shadow, written, (5 * MiB) - 512, Pattern(2048, 24));      // straddles, half over parent data
            WriteTracked(c, shadow, written, 10 * MiB, Pattern(4096, 25));             // never written below
            WriteTracked(c, shadow, written, 10 * MiB, Pattern(512, 26));              // overwrite within the child
            AssertSameContent(shadow, ReadAll(c), "child read-back");
            AssertExtents(c, written);
        }

        AssertClosedFileValid(child);
        using IBlockImage again = Open(child, readOnly: true);
        AssertSameContent(shadow, ReadAll(again), "child after reopen");
        AssertExtents(again, written);
    }

    [Fact]
    public async Task Counters_ReadPassedToTheParent_CountsOnTheParentNotTheLeaf()
    {
        using var dir = new TempDirectory();
        string parent = dir.File("p.vhd");
        string child = dir.File("c.vhd");
        VhdCreator.CreateDynamic(parent, Size);
        using (IBlockImage p = Open(parent))
        {
            await p.WriteAsync(0, Pattern(64 * 1024, 40));
        }

        VhdCreator.CreateDifferencing(child, parent);
        using IBlockImage c = Open(child);
        IBlockImage below = c.Parent!;
        await c.WriteAsync(MiB, Pattern(4096, 41));
        byte[] buffer = new byte[8192];

        // Parent data, the child's own data, then sectors neither holds (the chain's bottom answers zeros).
        await c.ReadAsync(0, buffer);
        Assert.Equal((0L, 16L), (c.Counters!.ReadSectors, below.Counters!.ReadSectors));
        await c.ReadAsync(MiB, buffer.AsMemory(0, 4096));
        Assert.Equal((8L, 16L), (c.Counters.ReadSectors, below.Counters.ReadSectors));
        await c.ReadAsync(8 * MiB, buffer);
        Assert.Equal((8L, 32L), (c.Counters.ReadSectors, below.Counters.ReadSectors));
    }

    [Fact]
    public void Differencing_ChainOfThree_ReadsTopmostVersionOfEachSector()
    {
        using var dir = new TempDirectory();
        string a = dir.File("a.vhd");
        string b = dir.File("b.vhd");
        string c = dir.File("c.vhd");
        byte[] shadow = new byte[Size];
        bool[] written = new bool[Size / 512];
        VhdCreator.CreateDynamic(a, Size);
        using (IBlockImage image = Open(a))
        {
            WriteTracked(image, shadow, written, 0, Pattern(3 * MiB, 30));
        }

        VhdCreator.CreateDifferencing(b, a);
        using (IBlockImage image = Open(b))
        {
            WriteTracked(image, shadow, written, MiB, Pattern(MiB, 31));
            WriteTracked(image, shadow, written, 8 * MiB, Pattern(8192, 32));
        }

        VhdCreator.CreateDifferencing(c, b);
        using (IBlockImage image = Open(c))
        {
            Assert.NotNull(image.Parent?.Parent);
            WriteTracked(image, shadow, written, (MiB / 2) + (MiB / 4), Pattern(MiB, 33));
            WriteTracked(image, shadow, written, (8 * MiB) + 4096, Pattern(8192, 34));
            AssertSameContent(shadow, ReadAll(image), "chain of three");
            AssertExtents(image, written);
        }

        using IBlockImage reopened = Open(c);
        AssertSameContent(shadow, ReadAll(reopened), "chain of three after reopen");
    }

    [Fact]
    public void Differencing_RawParent_ReadsRawBelowChildData()
    {
        using var dir = new TempDirectory();
        string raw = dir.File("base.raw");
        string child = dir.File("c.vhd");
        byte[] shadow = Pattern((int)Size, 40);
        shadow.AsSpan(6 * MiB, MiB).Clear();
        File.WriteAllBytes(raw, shadow);
        VhdCreator.CreateDifferencing(child, raw, parentIsRaw: true);
        string rawHash = Sha256(raw);
        bool[] written = new bool[Size / 512];
        using (IBlockImage c = Open(child))
        {
            Assert.Equal("aio", c.Parent?.DriverName);
            Assert.Equal(Size, c.SizeBytes);
            WriteTracked(c, shadow, written, (2 * MiB) - 4096, Pattern(8192, 41));
            WriteTracked(c, shadow, written, 6 * MiB, Pattern(4096, 42));
            AssertSameContent(shadow, ReadAll(c), "child over raw parent");
        }

        Assert.Equal(rawHash, Sha256(raw));
        using IBlockImage again = Open(child, readOnly: true);
        AssertSameContent(shadow, ReadAll(again), "child over raw parent after reopen");
    }

    [Fact]
    public void Differencing_ChildLargerThanParent_ReadsZerosPastParent()
    {
        // A raw parent sizes the child at creation; shrinking the parent afterwards leaves a child larger than it.
        using var dir = new TempDirectory();
        string raw = dir.File("base.raw");
        string child = dir.File("c.vhd");
        byte[] parent = Pattern((int)Size, 43);
        File.WriteAllBytes(raw, parent);
        VhdCreator.CreateDifferencing(child, raw, parentIsRaw: true);
        long parentSize = Size - (3 * MiB) - 512;
        using (FileStream f = File.OpenWrite(raw))
        {
            f.SetLength(parentSize);
        }

        using IBlockImage c = Open(child, readOnly: true);
        Assert.Equal(Size, c.SizeBytes);
        Assert.Equal(parentSize, c.Parent!.SizeBytes);
        byte[] expected = (byte[])parent.Clone();
        expected.AsSpan((int)parentSize).Clear();
        AssertSameContent(expected, ReadAll(c), "child larger than its parent");
    }

    [Fact]
    public void Dynamic_NeverWritten_ExtentsAreHoleZero()
    {
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        VhdCreator.CreateDynamic(path, Size);
        bool[] written = new bool[Size / 512];
        using IBlockImage image = Open(path);
        AssertExtents(image, written);
        WriteTracked(image, new byte[Size], written, (3 * MiB) + 1024, Pattern(1536, 50));
        WriteTracked(image, new byte[Size], written, 12 * MiB, Pattern(2 * MiB, 51));
        AssertExtents(image, written);
    }

    [Fact]
    public void Dynamic_Close_TrailingFooterValidAndFileTruncated()
    {
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        VhdCreator.CreateDynamic(path, Size);
        long endOfData;
        using (var image = (VhdImage)Open(path))
        {
            Run(image.WriteAsync(5 * MiB, Pattern(4096, 60)));
            Run(image.WriteAsync(MiB, Pattern(4096, 61)));
            endOfData = image.EndOfDataBytes;
        }

        Assert.Equal(endOfData + VhdFooter.Size, new FileInfo(path).Length);
        AssertClosedFileValid(path);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OpenReadOnly_ReadsAndExtents_ChangeNoByte(bool differencing)
    {
        using var dir = new TempDirectory();
        string parent = dir.File("p.vhd");
        VhdCreator.CreateDynamic(parent, Size);
        using (IBlockImage p = Open(parent))
        {
            Run(p.WriteAsync(MiB, Pattern(8192, 70)));
        }

        string path = parent;
        if (differencing)
        {
            path = dir.File("c.vhd");
            VhdCreator.CreateDifferencing(path, parent);
            using IBlockImage c = Open(path);
            Run(c.WriteAsync(2 * MiB, Pattern(8192, 71)));
        }

        string before = Sha256(path);
        string parentBefore = Sha256(parent);
        using (IBlockImage image = Open(path, readOnly: true))
        {
            ReadAll(image);
            Run(image.GetExtentsAsync(0, image.SizeBytes, new ExtentList()));
            Assert.True(image.IsReadOnly);
            var e = Assert.Throws<Tapdisk.Abi.ErrnoIOException>(() => Run(image.WriteAsync(0, new byte[512])));
            Assert.Equal(Tapdisk.Abi.Errno.EPERM, e.Errno);
        }

        Assert.Equal(before, Sha256(path));
        Assert.Equal(parentBefore, Sha256(parent));
    }

    /// <summary>The trailing footer is a valid footer identical to the backup at 0.</summary>
    internal static void AssertClosedFileValid(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        VhdFooter trailing = VhdFooter.Read(bytes.AsSpan(bytes.Length - VhdFooter.Size));
        Assert.True(trailing.HasValidCookie, "trailing footer cookie");
        Assert.True(trailing.HasValidChecksum, "trailing footer checksum");
        Assert.True(bytes.AsSpan(0, VhdFooter.Size).SequenceEqual(bytes.AsSpan(bytes.Length - VhdFooter.Size)), "backup footer equals trailing footer");
        using VhdImage single = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault);
        Assert.Equal(single.EndOfDataBytes + VhdFooter.Size, bytes.Length);
    }

    private static void WriteTracked(IBlockImage image, byte[] shadow, bool[] written, long offsetBytes, byte[] data)
    {
        Write(image, shadow, offsetBytes, data);
        written.AsSpan((int)(offsetBytes / 512), data.Length / 512).Fill(true);
    }

    /// <summary>Extents over the whole disk: Data exactly where some layer holds the sector, Hole|Zero elsewhere.</summary>
    private static void AssertExtents(IBlockImage image, bool[] written)
    {
        var extents = new ExtentList();
        Run(image.GetExtentsAsync(0, image.SizeBytes, extents));
        long expectedOffset = 0;
        foreach (ImageExtent e in extents.AsSpan())
        {
            Assert.Equal(expectedOffset, e.OffsetBytes);
            Assert.True(e.Flags is ExtentFlags.Data or (ExtentFlags.Hole | ExtentFlags.Zero), $"unexpected flags {e.Flags}");
            for (long s = e.OffsetBytes / 512; s < (e.OffsetBytes + e.LengthBytes) / 512; s++)
            {
                Assert.True(written[s] == (e.Flags == ExtentFlags.Data), $"sector {s}: extent says {e.Flags}, model says {(written[s] ? "written" : "never written")}");
            }

            expectedOffset += e.LengthBytes;
        }

        Assert.Equal(image.SizeBytes, expectedOffset);
    }
}
