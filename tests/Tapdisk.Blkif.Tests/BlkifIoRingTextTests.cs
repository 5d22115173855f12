using System.Buffers.Binary;
using System.Text;
using Xunit;

namespace Tapdisk.Blkif.Tests;

public sealed class BlkifIoRingTextTests
{
    [Fact]
    public void Crc32_IsZlibs() => Assert.Equal(0xCBF43926u, BlkifIoRingText.Crc32("123456789"u8));

    [Fact]
    public void Format_ChecksumThenText()
    {
        byte[] page = BlkifIoRingText.Format(new BlkifRingIndexes(32, 1000, 998, 999, 997, 997, 998));
        string text = Encoding.ASCII.GetString(page.AsSpan(8));
        Assert.Equal("nr_ents 32\nreq prod 1000 cons 998 event 999\nrsp prod 997 pvt 997 event 998\n", text);
        Assert.Equal(BlkifIoRingText.Crc32(page.AsSpan(8)), BinaryPrimitives.ReadUInt64LittleEndian(page));
    }
}
