using System.Buffers.Binary;
using System.Text;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Exact blktap layouts (data-plane.md 1.1, 1.13, 8.3).</summary>
public sealed class VhdCreatorTests
{
    [Theory]
    [InlineData(8L * MiB, 0L, 3584L)]
    [InlineData(64L * MiB, 1024L * MiB, 5120L)]
    [InlineData(0L, 0L, 3584L)]
    public void CreateDynamic_Size_HasBlktapFileLength(long size, long maxSize, long expectedLength)
    {
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        VhdCreator.CreateDynamic(path, size, maxSize);
        Assert.Equal(expectedLength, new FileInfo(path).Length);
    }

    [Fact]
    public void CreateDynamic_8MiB_MatchesBlktapLayout()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.vhd");
        VhdCreator.CreateDynamic(path, 8L * MiB);
        byte[] b = File.ReadAllBytes(path);
        Assert.Equal(3584, b.Length);

        VhdFooter footer = VhdFooter.Read(b.AsSpan(3072));
        Assert.True(footer.HasValidCookie && footer.HasValidChecksum);
        Assert.True(b.AsSpan(0, 512).SequenceEqual(b.AsSpan(3072, 512)), "backup footer at 0 equals the trailing footer");
        Assert.Equal(512UL, footer.DataOffset);
        Assert.Equal("tap", footer.CreatorName);
        Assert.Equal(VhdFooter.TapVersion, footer.CreatorVersion);
        Assert.Equal(0u, footer.CreatorHostOs);
        Assert.Equal(2u, footer.Features);
        Assert.Equal(8UL * MiB, footer.CurrentSize);
        Assert.Equal(new VhdGeometry(240, 4, 17), VhdGeometry.FromEncoded(footer.Geometry));
        Assert.Equal(VhdDiskType.Dynamic, footer.DiskType);
        Assert.False(VhdUuid.IsNull(footer.UniqueId));

        VhdDynamicHeader header = VhdDynamicHeader.Read(b.AsSpan(512, 1024));
        Assert.True(header.HasValidCookie);
        Assert.Equal(header.Checksum, header.ComputeChecksum());
        Assert.Equal(1536UL, header.TableOffset);
        Assert.Equal(4u, header.MaxTableEntries);
        Assert.Equal(2u * MiB, header.BlockSize);
        Assert.True(b.AsSpan(1536, 16).SequenceEqual(Enumerable.Repeat((byte)0xFF, 16).ToArray()), "4 unused BAT entries");
        Assert.False(b.AsSpan(1552, 512 - 16).ContainsAnyExcept((byte)0), "BAT padding is zero (blktap), not 0xFF (qemu)");

        VhdBatmapHeader batmap = VhdBatmapHeader.Read(b.AsSpan(2048, 512));
        Assert.True(batmap.HasValidCookie);
        Assert.Equal(2560UL, batmap.BatmapOffset);
        Assert.Equal(1u, batmap.BatmapSize);
        Assert.Equal(VhdBatmapHeader.CurrentVersion, batmap.Version);
        Assert.Equal(0xFFFFFFFFu, batmap.Checksum);
        Assert.False(b.AsSpan(2560, 512).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void CreateFixed_2MiB_IsDataPlusOneFooter()
    {
        using var dir = new TempDirectory();
        string path = dir.File("f.vhd");
        VhdCreator.CreateFixed(path, 2L * MiB);
        byte[] b = File.ReadAllBytes(path);
        Assert.Equal(2097664, b.Length);
        VhdFooter footer = VhdFooter.Read(b.AsSpan(2 * MiB));
        Assert.True(footer.HasValidChecksum);
        Assert.Equal(VhdDiskType.Fixed, footer.DiskType);
        Assert.Equal(VhdFooter.FixedDataOffset, footer.DataOffset);
        Assert.False(b.AsSpan(0, 2 * MiB).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void CreateDifferencing_ChildInSubdirectory_HasBlktapLocatorLayout()
    {
        using var dir = new TempDirectory();
        string parent = dir.File("t.vhd");
        Directory.CreateDirectory(dir.File("sub"));
        string child = dir.File("sub/c.vhd");
        VhdCreator.CreateDynamic(parent, 8L * MiB);
        VhdCreator.CreateDifferencing(child, parent);

        byte[] b = File.ReadAllBytes(child);
        Assert.Equal(5120, b.Length);
        VhdFooter footer = VhdFooter.Read(b.AsSpan(0x1200));
        Assert.True(footer.HasValidChecksum);
        Assert.Equal(VhdDiskType.Differencing, footer.DiskType);
        Assert.True(b.AsSpan(0, 512).SequenceEqual(b.AsSpan(0x1200, 512)));

        VhdDynamicHeader header = VhdDynamicHeader.Read(b.AsSpan(512, 1024));
        Assert.Equal(header.Checksum, header.ComputeChecksum());
        Assert.Equal("t.vhd", header.ParentName);
        Assert.Equal(VhdFooter.Read(File.ReadAllBytes(parent)).UniqueId, header.ParentUuid);

        byte[] windows = Encoding.Unicode.GetBytes(@".\..\t.vhd");
        (uint Code, long Offset, byte[] Payload)[] expected =
        [
            (VhdParentLocator.MacX, 0xC00, "file://../t.vhd"u8.ToArray()),
            (VhdParentLocator.W2ku, 0xE00, windows),
            (VhdParentLocator.W2ru, 0x1000, windows),
        ];
        for (int i = 0; i < expected.Length; i++)
        {
            VhdParentLocator loc = header.Locators[i];
            Assert.Equal(expected[i].Code, loc.PlatformCode);
            Assert.Equal((ulong)expected[i].Offset, loc.DataOffset);
            Assert.Equal((uint)expected[i].Payload.Length, loc.DataLength);
            Assert.Equal(512u, loc.DataSpace);
            Assert.Equal(0u, loc.Reserved);
            Assert.Equal(expected[i].Payload, b.AsSpan((int)expected[i].Offset, expected[i].Payload.Length).ToArray());
            Assert.False(b.AsSpan((int)expected[i].Offset + expected[i].Payload.Length, 512 - expected[i].Payload.Length).ContainsAnyExcept((byte)0));
        }

        for (int i = 3; i < VhdDynamicHeader.LocatorCount; i++)
        {
            Assert.Equal(default, header.Locators[i]);
        }

        using IBlockImage image = Open(child, readOnly: true);
        Assert.Equal(ImageOpener.CanonicalPath(parent), image.Parent?.Path is { } p ? ImageOpener.CanonicalPath(p) : null);
    }

    [Fact]
    public void CreateDifferencing_RawParent_HasNullParentUuid()
    {
        using var dir = new TempDirectory();
        string raw = dir.File("base.raw");
        File.WriteAllBytes(raw, new byte[4 * MiB]);
        string child = dir.File("c.vhd");
        VhdCreator.CreateDifferencing(child, raw, parentIsRaw: true);
        VhdDynamicHeader header = VhdDynamicHeader.Read(File.ReadAllBytes(child).AsSpan(512, 1024));
        Assert.True(VhdUuid.IsNull(header.ParentUuid));
        Assert.Equal("base.raw", header.ParentName);
        Assert.Equal(4UL * MiB, VhdFooter.Read(File.ReadAllBytes(child)).CurrentSize);
    }

    [Fact]
    public void CreateDynamic_Above2040GiB_RefusedWithClearError()
    {
        using var dir = new TempDirectory();
        string path = dir.File("big.vhd");
        var e = Assert.Throws<ImageOpenException>(() => VhdCreator.CreateDynamic(path, VhdLayout.MaxSizeBytes + MiB));
        Assert.Contains("2040 GiB", e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
        Assert.Throws<ImageOpenException>(() => VhdCreator.CreateFixed(path, VhdLayout.MaxSizeBytes + MiB));
    }

    [Fact]
    public void CreateDynamic_Exactly2040GiB_OpensWithThatSize()
    {
        using var dir = new TempDirectory();
        string path = dir.File("max.vhd");
        VhdCreator.CreateDynamic(path, VhdLayout.MaxSizeBytes);
        using IBlockImage image = Open(path, readOnly: true);
        Assert.Equal(VhdLayout.MaxSizeBytes, image.SizeBytes);
        uint maxBat = BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(path).AsSpan(512 + 28));
        Assert.Equal(1044480u, maxBat);
    }
}
