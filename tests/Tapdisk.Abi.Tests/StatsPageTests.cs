using System.Buffers.Binary;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Abi.Tests;

public sealed class StatsPageTests
{
    [Fact]
    public void TdStatsPage_Counts_AreVisibleInTheFileAtBlktapOffsets()
    {
        using var dir = new TempDirectory();
        string path = dir.File("vbd-5-51712");
        var page = new TdStatsPage(path, TdStats.VbdVersion);
        page.Submitted(write: false);
        page.Completed(write: false, sectors: 8, microseconds: 30);
        page.Submitted(write: true);
        page.Submitted(write: true);
        page.Completed(write: true, sectors: 16, microseconds: 7);
        page.AddReadSectors(4);
        page.Failed();

        // What another process sees: the file's bytes, read through the file system, not through our mapping.
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(StatsPage.Size, bytes.Length);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(bytes));
        ulong At(int offset) => BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(offset));
        Assert.Equal(1ul, At(16));  // read_reqs_submitted
        Assert.Equal(1ul, At(24));  // read_reqs_completed
        Assert.Equal(12ul, At(32)); // read_sectors
        Assert.Equal(30ul, At(40)); // read_total_ticks
        Assert.Equal(2ul, At(48));  // write_reqs_submitted
        Assert.Equal(1ul, At(56));  // write_reqs_completed
        Assert.Equal(16ul, At(64)); // write_sectors
        Assert.Equal(7ul, At(72));  // write_total_ticks
        Assert.Equal(1ul, At(80));  // io_errors
        Assert.Equal(12ul, page.Snapshot().ReadSectors);

        page.Remove();
        Assert.False(File.Exists(path));

        // A late completion after removal still lands somewhere valid.
        page.Completed(write: true, sectors: 1, microseconds: 1);
        Assert.Equal(17ul, page.Snapshot().WriteSectors);
    }

    [Fact]
    public void BlkbackStatsPage_RenamedIntoPlace_KeepsTheMaximum()
    {
        using var dir = new TempDirectory();
        string path = dir.File("statistics");
        var page = new BlkbackStatsPage(path, dir.File("statistics~"));
        Assert.False(File.Exists(dir.File("statistics~")));
        page.ReadReceived();
        page.Completed(write: false, sectors: 8, microseconds: 50);
        page.Completed(write: false, sectors: 8, microseconds: 20);
        page.FlushReceived();

        byte[] bytes = File.ReadAllBytes(path);
        ulong At(int offset) => BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(offset));
        Assert.Equal(1ul, At(8));   // st_f_req
        Assert.Equal(1ul, At(24));  // st_rd_req
        Assert.Equal(2ul, At(32));  // st_rd_cnt
        Assert.Equal(16ul, At(40)); // st_rd_sect
        Assert.Equal(70ul, At(48)); // st_rd_sum_usecs
        Assert.Equal(50ul, At(56)); // st_rd_max_usecs
        page.Remove();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void TextPage_FileIsExactlyItsContent_AfterEachWrite()
    {
        using var dir = new TempDirectory();
        var page = new TextPage(dir.File("io_ring"), dir.File("io_ring~"), "nr_ents 32\n"u8);
        Assert.False(File.Exists(dir.File("io_ring~")));
        Assert.Equal("nr_ents 32\n", File.ReadAllText(page.Path));
        page.Write("nr_ents 32\nreq prod 1000 cons 1000 event 1001\n"u8);
        Assert.Equal("nr_ents 32\nreq prod 1000 cons 1000 event 1001\n", File.ReadAllText(page.Path));
        page.Write("nr_ents 32\n"u8);
        Assert.Equal("nr_ents 32\n", File.ReadAllText(page.Path));
        page.Write("longer again: nr_ents 32\n"u8);
        Assert.Equal("longer again: nr_ents 32\n", File.ReadAllText(page.Path));
        page.Remove();
        Assert.False(File.Exists(page.Path));
    }
}
