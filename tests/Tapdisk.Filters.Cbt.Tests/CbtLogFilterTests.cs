using CsCheck;
using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Filters.Cbt.Tests;

public sealed class CbtLogFilterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Every vector whose log was big enough: the same writes through our filter leave the same bytes.</summary>
    [Theory]
    [InlineData("d.cbtlog")]
    [InlineData("r.cbtlog")]
    [InlineData("h.cbtlog")]
    [InlineData("p1.cbtlog")]
    [InlineData("p2.cbtlog")]
    [InlineData("q1.cbtlog")]
    [InlineData("q2.cbtlog")]
    [InlineData("o.cbtlog")]
    [InlineData("ro.cbtlog")]
    [InlineData("e.cbtlog")]
    [InlineData("z.cbtlog")]
    [InlineData("l.cbtlog")]
    [InlineData("odd.cbtlog")]
    public async Task WriteAsync_BlktapVectorWrites_LogIsByteIdentical(string file)
    {
        BlktapCbtVectors.Vector vector = BlktapCbtVectors.Get(file);
        byte[] expected = File.ReadAllBytes(BlktapCbtVectors.Log(file));
        string log = CreateLog(file, vector.LogSizeBytes, CbtLogHeader.Read(expected));

        await using (CbtLogFilter filter = CbtLogFilter.Open(new MemoryImage(vector.DiskBytes), log))
        {
            foreach ((long offset, long length) in vector.Writes)
            {
                // tapdisk's NBD server truncates to sectors (offset >> 9, length >> 9) before the log sees the write.
                long sectorOffset = offset & ~511L;
                int sectorLength = (int)(length & ~511L);
                await filter.WriteAsync(sectorOffset, new byte[sectorLength], WriteFlags.None, CancellationToken.None);
            }
        }

        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(File.ReadAllBytes(log)));
    }

    [Fact]
    public async Task WriteAsync_NextLayerFails_UnitsStayMarked()
    {
        BlktapCbtVectors.Vector vector = BlktapCbtVectors.Get("f.cbtlog");
        byte[] expected = File.ReadAllBytes(BlktapCbtVectors.Log("f.cbtlog"));
        string log = CreateLog("f.cbtlog", vector.LogSizeBytes, CbtLogHeader.Read(expected));

        await using (CbtLogFilter filter = CbtLogFilter.Open(new FailingImage(new MemoryImage(vector.DiskBytes)), log))
        {
            foreach ((long offset, long length) in vector.Writes)
            {
                await Assert.ThrowsAsync<ErrnoIOException>(async () => await filter.WriteAsync(offset, new byte[length], WriteFlags.None, CancellationToken.None));
            }
        }

        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(File.ReadAllBytes(log)));
    }

    [Fact]
    public async Task ReadAsync_AnyRange_SetsNoBitAndReturnsNextData()
    {
        string log = CreateLog("read.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        var memory = new MemoryImage(1 << 20);
        await memory.WriteAsync(65536, new byte[] { 7, 7, 7, 7 }, WriteFlags.None, CancellationToken.None);
        byte[] before = File.ReadAllBytes(log);
        await using (CbtLogFilter filter = CbtLogFilter.Open(memory, log))
        {
            byte[] buffer = new byte[4];
            await filter.ReadAsync(65536, buffer, CancellationToken.None);
            Assert.Equal(new byte[] { 7, 7, 7, 7 }, buffer);
            Assert.False(filter.IsMarked(1));
        }

        Assert.Equal(before, File.ReadAllBytes(log));
    }

    [Fact]
    public async Task WriteAsync_BitsVisibleInFileBeforeClose()
    {
        // MAP_SHARED, as blktap: another reader of the file sees the bit while the filter is still open.
        string log = CreateLog("live.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        await using CbtLogFilter filter = CbtLogFilter.Open(new MemoryImage(1 << 20), log);
        await filter.WriteAsync(3 * 65536, new byte[512], WriteFlags.None, CancellationToken.None);
        Assert.Equal(0x08, File.ReadAllBytes(log)[CbtLogHeader.Size]);
        Assert.True(filter.IsMarked(3));
    }

    [Fact]
    public async Task TrimAndZero_MarkTheirUnits()
    {
        string log = CreateLog("tz.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        await using CbtLogFilter filter = CbtLogFilter.Open(new MemoryImage(1 << 20), log);
        await filter.TrimAsync(2 * 65536, 65536, CancellationToken.None);
        await filter.ZeroAsync(5 * 65536, 2 * 65536, ZeroFlags.None, CancellationToken.None);
        Assert.Equal([false, false, true, false, false, true, true, false], Enumerable.Range(0, 8).Select(u => filter.IsMarked(u)));
    }

    [Fact]
    public async Task FlushAsync_DirtyLog_ForwardsFlush()
    {
        string log = CreateLog("flush.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        var memory = new MemoryImage(1 << 20);
        await using CbtLogFilter filter = CbtLogFilter.Open(memory, log);
        await filter.WriteAsync(0, new byte[512], WriteFlags.Fua, CancellationToken.None);
        await filter.FlushAsync(CancellationToken.None);
        Assert.Equal(1, memory.FlushCount);
        Assert.True(filter.IsMarked(0));
    }

    [Fact]
    public void Open_LogShorterThanDisk_RefusedAndUntouched()
    {
        // blktap's S6d: a log made for 1 MiB on a 64 MiB disk silently loses bits (or spins on SIGBUS); we refuse it.
        byte[] vector = File.ReadAllBytes(BlktapCbtVectors.Log("s.cbtlog"));
        string log = CreateLog("short.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        byte[] before = File.ReadAllBytes(log);
        Assert.Equal(vector.Length, before.Length);

        ImageOpenException e = Assert.Throws<ImageOpenException>(() => CbtLogFilter.Open(new MemoryImage(64 << 20), log));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("cbt-util set -s 67108864", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(log));
    }

    [Fact]
    public void Open_HeaderNamesSmallerDisk_Refused()
    {
        // Big enough a file, but its header says it tracks a 1 MiB disk: cbt-util get -b would drop the rest.
        string log = CreateLog("small-header.cbtlog", 64 << 20, new CbtLogHeader());
        using (FileStream f = File.OpenWrite(log))
        {
            f.Position = 40;
            f.Write(BitConverter.GetBytes(1L << 20));
        }

        ImageOpenException e = Assert.Throws<ImageOpenException>(() => CbtLogFilter.Open(new MemoryImage(64 << 20), log));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public void Open_MissingLog_ENOENT()
    {
        ImageOpenException e = Assert.Throws<ImageOpenException>(() => CbtLogFilter.Open(new MemoryImage(1 << 20), _dir.File("missing.cbtlog")));
        Assert.Equal(Errno.ENOENT, e.Errno);
    }

    [Fact]
    public async Task Filter_Stats_NameIsLogPathAndKindIsFilter()
    {
        string log = CreateLog("name.cbtlog", 1 << 20, new CbtLogHeader { DiskSizeBytes = 1 << 20 });
        await using CbtLogFilter filter = CbtLogFilter.Open(new MemoryImage(1 << 20), log);
        Assert.Equal(log, filter.Path);
        Assert.Equal("log", filter.DriverName);
        Assert.Equal(LayerKind.Filter, filter.Kind);
        Assert.Equal(16, filter.Units);
    }

    [Fact]
    public void Units_RandomRequests_MatchBlktapSectorRule()
    {
        // block-log.c: bits sec*512/65536 .. (sec+secs-1)*512/65536 for a sector-aligned request.
        Gen.Select(Gen.Long[0, 1L << 30], Gen.Long[1, 1L << 15]).Sample((sector, sectors) =>
        {
            (long first, long last) = CbtBitmap.Units(sector * 512, sectors * 512);
            Assert.Equal(sector * 512 / 65536, first);
            Assert.Equal((sector + sectors - 1) * 512 / 65536, last);
        });
    }

    private string CreateLog(string name, long logSizeBytes, CbtLogHeader header)
    {
        byte[] bytes = new byte[CbtLogHeader.Size + (int)CbtBitmap.BitmapBytes((ulong)logSizeBytes)];
        (header with { DiskSizeBytes = (ulong)logSizeBytes }).Write(bytes);
        string path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
