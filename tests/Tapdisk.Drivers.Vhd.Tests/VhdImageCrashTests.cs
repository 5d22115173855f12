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
}
