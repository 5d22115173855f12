using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdBatmapHeaderTests
{
    [Fact]
    public void ReadWrite_AnyHeader_RoundTrips()
    {
        // Bytes 94.. are reserved and always written as zero.
        Gen.Byte.Array[VhdBatmapHeader.ReservedOffset].Sample(prefix =>
        {
            byte[] bytes = new byte[VhdBatmapHeader.Size];
            prefix.CopyTo(bytes, 0);
            VhdBatmapHeader x = VhdBatmapHeader.Read(bytes);
            byte[] written = new byte[VhdBatmapHeader.Size];
            x.Write(written);
            Assert.Equal(bytes, written);
            CodecAssert.SameFields(x, VhdBatmapHeader.Read(written));
        });
    }

    [Fact]
    public void ComputeBatmap_EmptyMap_IsAllOnes()
    {
        Assert.Equal(0xFFFFFFFFu, VhdChecksum.ComputeBatmap(new byte[512], signedBytes: false));
    }

    [Fact]
    public void ComputeBatmap_Version11_SumsSignedBytes()
    {
        byte[] map = new byte[512];
        map[0] = 0xFF;
        Assert.Equal(~255u, VhdChecksum.ComputeBatmap(map, signedBytes: false));
        Assert.Equal(~unchecked((uint)-1), VhdChecksum.ComputeBatmap(map, signedBytes: true));
    }

    [Theory]
    [InlineData(8L << 20, 512)]
    [InlineData(16L << 30, 1024)]
    [InlineData((8L << 30) + (8L << 20), 512)]
    [InlineData((8L << 30) + (512L << 20), 1024)]
    public void ChecksummedMapBytes_Size_FollowsReferenceRounding(long size, int expected)
    {
        Assert.Equal(expected, VhdBatmapHeader.ChecksummedMapBytes((ulong)size));
    }

    [Theory]
    [InlineData(4u, 1u)]
    [InlineData(4096u, 1u)]
    [InlineData(4097u, 2u)]
    public void SectorsFor_Entries_RoundsUp(uint entries, uint expected)
    {
        Assert.Equal(expected, VhdBatmapHeader.SectorsFor(entries));
    }
}
