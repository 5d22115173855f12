using CsCheck;
using Xunit;
namespace Tapdisk.Filters.Cbt.Tests;

public sealed class CbtLogHeaderTests
{
    [Fact]
    public void Read_BlktapPresetHeader_FieldsAsCbtUtilSetThem()
    {
        // h.cbtlog: cbt-util set -p 11111111-2222-3333-4444-555555555555 -c aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee -f 1, pad de ad be ef.
        byte[] bytes = File.ReadAllBytes(BlktapCbtVectors.Log("h.cbtlog"));
        CbtLogHeader header = CbtLogHeader.Read(bytes);
        Assert.Equal("11111111-2222-3333-4444-555555555555", header.Parent.ToString("D"));
        Assert.Equal("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", header.Child.ToString("D"));
        Assert.Equal(1, header.Consistent);
        Assert.Equal(0xefbeaddeu, header.Pad);
        Assert.Equal(67108864UL, header.DiskSizeBytes);
    }

    [Fact]
    public void WriteRead_RandomHeaders_RoundTrip()
    {
        Gen.Select(Gen.Guid, Gen.Guid, Gen.Int, Gen.UInt, Gen.ULong).Sample((p, c, f, pad, size) =>
        {
            var header = new CbtLogHeader { Parent = p, Child = c, Consistent = f, Pad = pad, DiskSizeBytes = size };
            byte[] bytes = new byte[CbtLogHeader.Size];
            header.Write(bytes);
            Assert.Equal(header, CbtLogHeader.Read(bytes));
        });
    }

    [Theory]
    [InlineData(1UL, 1UL)]
    [InlineData(65536UL, 1UL)]
    [InlineData(524289UL, 2UL)]
    [InlineData(67108864UL, 128UL)]
    [InlineData(10486272UL, 21UL)]
    [InlineData(1099511627776UL, 2097152UL)]
    [InlineData(18446744073709551615UL, 0UL)]
    public void BitmapBytes_SizesFromTheTranscript(ulong size, ulong bitmapBytes) => Assert.Equal(bitmapBytes, CbtBitmap.BitmapBytes(size));
}
