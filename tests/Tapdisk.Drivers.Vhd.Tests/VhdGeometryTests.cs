using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdGeometryTests
{
    [Theory]
    [InlineData(8L << 20, 240, 4, 17)]
    [InlineData(64L << 20, 963, 8, 17)]
    [InlineData(1L << 30, 2080, 16, 63)]
    [InlineData(2040L << 30, 65535, 16, 255)]
    public void ForSize_KnownSizes_MatchesSpec(long size, int cylinders, int heads, int sectors)
    {
        Assert.Equal(new VhdGeometry((ushort)cylinders, (byte)heads, (byte)sectors), VhdGeometry.ForSize(size));
    }

    [Fact]
    public void ForSize_AnySize_NeverExceedsSizeAndRoundTripsEncoded()
    {
        Gen.Long[0, 2040L << 30].Sample(size =>
        {
            VhdGeometry g = VhdGeometry.ForSize(size);
            Assert.True(g.SizeBytes <= Math.Max(size, 512), $"{g} is {g.SizeBytes} bytes, more than {size}");
            Assert.InRange(g.Heads, 4, 16);
            Assert.Equal(g, VhdGeometry.FromEncoded(g.Encoded));
        });
    }
}
