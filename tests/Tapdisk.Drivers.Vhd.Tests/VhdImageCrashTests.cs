using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>A process crash while open read-write: the file as left must open through the backup footer (data-plane.md 2.3.5).</summary>
public sealed class VhdImageCrashTests
{
    private const long Size = 16L * MiB;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CopyWhileOpen_AfterFlush_OpensViaBackupWithEveryFlushedWrite(bool differencing)
    {
        using var dir = new TempDirectory();
        string parent = dir.File("p.vhd");
        byte[] shadow = new byte[Size];
        VhdCreator.CreateDynamic(parent, Size);
        string path = parent;
        if (differencing)
        {
            using (IBlockImage p = Open(parent))
            {
                Write(p, shadow, 0, Pattern(3 * MiB, 80));
            }

            path = dir.File("c.vhd");
            VhdCreator.CreateDifferencing(path, parent);
        }

        string copy = dir.File("crashed.vhd");
        using (IBlockImage image = Open(path))
        {
            Write(image, shadow, MiB, Pattern(8192, 81));
            Write(image, shadow, (4 * MiB) - 4096, Pattern(8192, 82));
            Write(image, shadow, 10 * MiB, Pattern(2 * MiB, 83));
            Write(image, shadow, MiB + 8192, Pattern(512, 84));
            Run(image.FlushAsync());

            // The "crash": the bytes as they are on disk now, before any close-time metadata update.
            ExternalTool.Run("/bin/cp", "--sparse=always", path, copy).EnsureSuccess("cp");
        }

        byte[] crashed = File.ReadAllBytes(copy);
        VhdFooter trailing = VhdFooter.Read(crashed.AsSpan(crashed.Length - VhdFooter.Size));
        Assert.False(trailing.HasValidCookie && trailing.HasValidChecksum, "allocation overwrote the old trailing footer, so the copy relies on the backup footer");

        using (IBlockImage reopened = Open(copy, readOnly: true))
        {
            AssertSameContent(shadow, ReadAll(reopened), "crashed copy");
        }

        // Opening read-write and closing repairs the trailing footer.
        using (IBlockImage repaired = Open(copy))
        {
            Write(repaired, shadow, 12 * MiB, Pattern(512, 85));
        }

        VhdImageChainTests.AssertClosedFileValid(copy);
        using IBlockImage final = Open(copy, readOnly: true);
        AssertSameContent(shadow, ReadAll(final), "crashed copy after repair");
    }

    /// <summary>
    /// The file ends as a kill during the session leaves it: "truncated" is the layout while open (the last block
    /// ends the file, data-plane.md 2.3.5), "zeroed" a footer sector that no longer holds a footer, "leaked" an
    /// allocation killed after its data and bitmap writes but before its BAT write (2.3.2), so the file runs on
    /// past the end of data by a block nothing points to.
    /// </summary>
    public static TheoryData<string, string> CrashedEnds
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string end in new[] { "truncated", "zeroed", "leaked" })
            {
                foreach (string session in new[] { "nothing", "rewrite", "allocate" })
                {
                    data.Add(end, session);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(CrashedEnds))]
    public void ReopenReadWrite_TrailingFooterMissing_CloseLeavesValidImage(string crashedEnd, string session)
    {
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        byte[] shadow = CreateAllocated(path);
        long endOfData = new FileInfo(path).Length - VhdFooter.Size;
        Crash(path, crashedEnd);

        using (IBlockImage image = Open(path))
        {
            switch (session)
            {
                case "nothing":
                    break;
                case "rewrite":
                    // Only sectors whose bitmap bits are already set: no bitmap, BAT or batmap write is needed.
                    Write(image, shadow, 0, Pattern(65536, 95));
                    Write(image, shadow, 2 * MiB, Pattern(2 * MiB, 96));
                    Write(image, shadow, (10 * MiB) + 8192, Pattern(4096, 97));
                    break;
                case "allocate":
                    Write(image, shadow, MiB, Pattern(4096, 98));
                    Write(image, shadow, 12 * MiB, Pattern(8192, 99));
                    endOfData += (2 * MiB) + (8 * VhdLayout.SectorSize);
                    break;
            }
        }

        VhdImageChainTests.AssertClosedFileValid(path);
        Assert.Equal(endOfData + VhdFooter.Size, new FileInfo(path).Length);
        AssertQemuCheckClean(path);
        AssertQemuCompareIdentical(path, shadow, dir.Path);
        using IBlockImage reopened = Open(path, readOnly: true);
        AssertSameContent(shadow, ReadAll(reopened), $"{crashedEnd} image after a read-write session that did {session}");
    }

    [Fact]
    public void OpenReadOnly_TrailingFooterMissing_ChangesNoByte()
    {
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        byte[] shadow = CreateAllocated(path);
        Crash(path, "truncated");
        string hash = Sha256(path);
        using (IBlockImage image = Open(path, readOnly: true))
        {
            AssertSameContent(shadow, ReadAll(image), "crashed image read-only");
        }

        Assert.Equal(hash, Sha256(path));
    }

    [Fact]
    public void ReopenReadWrite_TruncatedMidBlockNothingWritten_ChangesNoByte()
    {
        // Block 5 lost all but its first 32 KiB of data. Not a crash of ours (allocation extends the file before the BAT
        // points into it): the missing sectors stay missing, failing with EIO, rather than turning into zeros because a
        // footer was appended after them.
        using var dir = new TempDirectory();
        string path = dir.File("d.vhd");
        CreateAllocated(path);
        using (var f = new FileStream(path, FileMode.Open))
        {
            f.SetLength(f.Length - VhdFooter.Size - (2 * MiB) + 32768);
        }

        string hash = Sha256(path);
        using (IBlockImage image = Open(path))
        {
            var e = Assert.Throws<ErrnoIOException>(() => Run(image.ReadAsync((10 * MiB) + 32768, new byte[4096])));
            Assert.Equal(Errno.EIO, e.Errno);
        }

        Assert.Equal(hash, Sha256(path));
    }

    /// <summary>A closed 16 MiB dynamic VHD with blocks 0 (partial), 1 (full) and 5 (partial) allocated.</summary>
    private static byte[] CreateAllocated(string path)
    {
        byte[] shadow = new byte[Size];
        VhdCreator.CreateDynamic(path, Size);
        using IBlockImage image = Open(path);
        Write(image, shadow, 0, Pattern(65536, 91));
        Write(image, shadow, 2 * MiB, Pattern(2 * MiB, 92));
        Write(image, shadow, 10 * MiB, Pattern(65536, 93));
        return shadow;
    }

    private static void Crash(string path, string crashedEnd)
    {
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            switch (crashedEnd)
            {
                case "truncated":
                    f.SetLength(f.Length - VhdFooter.Size);
                    break;
                case "zeroed":
                    f.Position = f.Length - VhdFooter.Size;
                    f.Write(new byte[VhdFooter.Size]);
                    break;
                case "leaked":
                    // Gap, bitmap and data of a block whose BAT entry never landed; guest data fills its last sector.
                    f.SetLength(f.Length - VhdFooter.Size);
                    f.Position = f.Length + (VhdLayout.SectorSize * 7);
                    f.Write(Enumerable.Repeat((byte)0xFF, VhdLayout.SectorSize).ToArray());
                    f.Write(Pattern(2 * MiB, 94));
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(crashedEnd), crashedEnd, null);
            }
        }

        byte[] bytes = File.ReadAllBytes(path);
        VhdFooter trailing = VhdFooter.Read(bytes.AsSpan(bytes.Length - VhdFooter.Size));
        Assert.False(trailing.HasValidCookie, "the crashed file has no trailing footer");
    }
}
