using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdFooterTests
{
    private static readonly Gen<byte[]> s_footerBytes = Gen.Byte.Array[VhdFooter.Size];

    [Fact]
    public void ReadWrite_AnyFooter_RoundTrips()
    {
        s_footerBytes.Sample(bytes =>
        {
            VhdFooter x = VhdFooter.Read(bytes);
            byte[] written = new byte[VhdFooter.Size];
            x.Write(written);
            Assert.Equal(bytes, written);
            CodecAssert.SameFields(x, VhdFooter.Read(written));
        });
    }

    [Fact]
    public void UpdateChecksum_AnyFooter_IsValidAndMatchesByteSum()
    {
        s_footerBytes.Sample(bytes =>
        {
            VhdFooter x = VhdFooter.Read(bytes);
            x.UpdateChecksum();
            Assert.True(x.HasValidChecksum);
            byte[] written = new byte[VhdFooter.Size];
            x.Write(written);
            uint sum = 0;
            for (int i = 0; i < written.Length; i++)
            {
                sum += i is >= VhdFooter.ChecksumOffset and < VhdFooter.ChecksumOffset + 4 ? 0u : written[i];
            }

            Assert.Equal(~sum, x.Checksum);
            Assert.True(VhdFooter.Read(written).HasValidChecksum);
        });
    }

    [Fact]
    public void HasValidChecksum_AnyByteFlipped_IsFalse()
    {
        Gen.Select(s_footerBytes, Gen.Int[0, VhdFooter.Size - 1], Gen.Byte[1, 255]).Sample((bytes, index, mask) =>
        {
            VhdFooter x = VhdFooter.Read(bytes);
            x.CreatorApplication = 0x71656D75; // "qemu": keeps the legacy tap hidden-byte rule out of the way
            x.UpdateChecksum();
            byte[] written = new byte[VhdFooter.Size];
            x.Write(written);
            written[index] ^= mask;
            Assert.False(VhdFooter.Read(written).HasValidChecksum);
        });
    }

    [Fact]
    public void HasValidChecksum_LegacyTapHiddenNotSummed_IsTrue()
    {
        var x = new VhdFooter { CreatorVersion = 0x00010001, CurrentSize = 8 << 20, DiskTypeValue = 3 };
        x.UpdateChecksum();
        x.Hidden = 1;
        Assert.True(x.HasValidChecksum);
        x.CreatorVersion = VhdFooter.TapVersion;
        Assert.False(x.HasValidChecksum);
    }
}
