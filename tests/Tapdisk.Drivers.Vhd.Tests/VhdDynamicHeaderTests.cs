using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdDynamicHeaderTests
{
    private static readonly Gen<byte[]> s_headerBytes = Gen.Byte.Array[VhdDynamicHeader.Size];

    [Fact]
    public void ReadWrite_AnyHeader_RoundTrips()
    {
        s_headerBytes.Sample(bytes =>
        {
            VhdDynamicHeader x = VhdDynamicHeader.Read(bytes);
            byte[] written = new byte[VhdDynamicHeader.Size];
            x.Write(written);
            Assert.Equal(bytes, written);
            CodecAssert.SameFields(x, VhdDynamicHeader.Read(written));
        });
    }

    [Fact]
    public void UpdateChecksum_AnyHeader_SurvivesRoundTrip()
    {
        Gen.Select(s_headerBytes, Gen.Int[0, VhdDynamicHeader.Size - 1], Gen.Byte[1, 255]).Sample((bytes, index, mask) =>
        {
            VhdDynamicHeader x = VhdDynamicHeader.Read(bytes);
            x.UpdateChecksum();
            byte[] written = new byte[VhdDynamicHeader.Size];
            x.Write(written);
            VhdDynamicHeader back = VhdDynamicHeader.Read(written);
            Assert.Equal(back.Checksum, back.ComputeChecksum());
            written[index] ^= mask;
            VhdDynamicHeader flipped = VhdDynamicHeader.Read(written);
            Assert.NotEqual(flipped.Checksum, flipped.ComputeChecksum());
        });
    }

    [Fact]
    public void ParentName_Ascii_RoundTripsAsUtf16BigEndian()
    {
        var x = new VhdDynamicHeader { ParentName = "t.vhd" };
        Assert.Equal(new byte[] { 0, (byte)'t', 0, (byte)'.', 0, (byte)'v' }, x.ParentNameBytes[..6]);
        Assert.Equal("t.vhd", x.ParentName);
    }
}
