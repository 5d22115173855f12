using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Interoperability with qemu's vpc driver, both ways (data-plane.md 8.1, 8.2, 8.3).</summary>
public sealed class VhdImageQemuTests
{
    [Theory]
    [InlineData("dynamic", "qemu")]
    [InlineData("dynamic,force_size=on", "qem2")]
    [InlineData("fixed", "qemu")]
    [InlineData("fixed,force_size=on", "qem2")]
    public void QemuImage_ReadAndWrittenByUs_MatchesQemuAndShadow(string subformat, string creator)
    {
        using var dir = new TempDirectory();
        string vhd = dir.File("q.vhd");
        QemuImg("create", "-f", "vpc", "-o", "subformat=" + subformat, vhd, "24M").EnsureSuccess("qemu-img create");
        long size = QemuVirtualSize(vhd);

        // qemu writes: inside block 0, across a block boundary, and the very last sectors of the disk.
        QemuIo(vhd, "write -P 0xab 1M 64k");
        QemuIo(vhd, "write -P 0xcd 5M 2M");
        QemuIo(vhd, $"write -P 0x11 {size - 4096} 4k");

        byte[] shadow = QemuReadAll(vhd, dir.Path);
        using (IBlockImage image = Open(vhd))
        {
            var vhdImage = Assert.IsType<VhdImage>(image);
            Assert.Equal(creator, vhdImage.Footer.CreatorName);
            Assert.Equal(size, image.SizeBytes);
            AssertSameContent(shadow, ReadAll(image), "our read of the qemu image vs qemu-img convert");

            Write(image, shadow, (3 * MiB) + 512, Pattern(4096, 1));                 // partial block, unallocated
            Write(image, shadow, 8 * MiB, Pattern(2 * MiB, 2));                      // one full block
            Write(image, shadow, (12 * MiB) - 8192, Pattern(16384, 3));              // straddles blocks 5 and 6
            Write(image, shadow, MiB + 4096, Pattern(8192, 4));                      // inside qemu's block 0
            Write(image, shadow, (size - 8192) / 512 * 512, Pattern(8192, 5));       // the last, partial block
            AssertSameContent(shadow, ReadAll(image), "our read-back before close");
        }

        AssertQemuCompareIdentical(vhd, shadow, dir.Path);
        AssertQemuCheckClean(vhd);
        AssertSameContent(shadow, QemuReadAll(vhd, dir.Path), "qemu's read after our writes");
        using IBlockImage reopened = Open(vhd, readOnly: true);
        AssertSameContent(shadow, ReadAll(reopened), "our read after reopen");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OurImage_WrittenAndClosed_QemuReadsShadow(bool fixedDisk)
    {
        using var dir = new TempDirectory();
        string vhd = dir.File("t.vhd");
        const long size = 24L * MiB;
        if (fixedDisk)
        {
            VhdCreator.CreateFixed(vhd, size);
        }
        else
        {
            VhdCreator.CreateDynamic(vhd, size);
        }

        byte[] shadow = new byte[size];
        using (IBlockImage image = Open(vhd))
        {
            Write(image, shadow, 512, Pattern(1024, 10));
            Write(image, shadow, 2 * MiB, Pattern(2 * MiB, 11));
            Write(image, shadow, (6 * MiB) - 4096, Pattern(12288, 12));
            Write(image, shadow, (2 * MiB) + 4096, Pattern(4096, 13));
            Write(image, shadow, size - 512, Pattern(512, 14));
        }

        Assert.Equal(size, QemuVirtualSize(vhd));
        AssertSameContent(shadow, QemuReadAll(vhd, dir.Path), "qemu-img convert of our image");
        AssertQemuCompareIdentical(vhd, shadow, dir.Path);
        AssertQemuCheckClean(vhd);
    }

    [Fact]
    public void OurImage_Empty_QemuSeesCurrentSizeAndZeros()
    {
        using var dir = new TempDirectory();
        string vhd = dir.File("e.vhd");
        VhdCreator.CreateDynamic(vhd, 8L * MiB);

        // qemu sizes creator "tap" by current_size, not by the (smaller) CHS product.
        Assert.Equal(8L * MiB, QemuVirtualSize(vhd));
        AssertSameContent(new byte[8 * MiB], QemuReadAll(vhd, dir.Path), "qemu read of an empty image");
    }
}
