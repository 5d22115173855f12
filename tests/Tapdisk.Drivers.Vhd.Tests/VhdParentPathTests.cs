using System.Text;
using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdParentPathTests
{
    private static readonly Gen<string> s_segment = Gen.Char["abcxyz019_-"].Array[1, 6].Select(c => new string(c));
    private static readonly Gen<string> s_absolute = s_segment.Array[1, 5].Select(s => "/" + string.Join('/', s));

    [Fact]
    public void Relative_SameDirectory_IsDotSlashName()
    {
        Assert.Equal("./p.vhd", VhdParentPath.Relative("/srv/vm/c.vhd", "/srv/vm/p.vhd"));
    }

    [Fact]
    public void Relative_ChildInSubdirectory_IsDotDotName()
    {
        Assert.Equal("../t.vhd", VhdParentPath.Relative("/srv/sub/c.vhd", "/srv/t.vhd"));
    }

    [Fact]
    public void EncodeMacX_ChildInSubdirectory_IsFileUrl15Bytes()
    {
        byte[] macx = VhdParentPath.EncodeMacX("../t.vhd");
        Assert.Equal("file://../t.vhd"u8.ToArray(), macx);
        Assert.Equal(15, macx.Length);
        Assert.Equal("../t.vhd", VhdParentPath.Decode(VhdParentLocator.MacX, macx));
    }

    [Fact]
    public void EncodeWindows_ChildInSubdirectory_IsBackslashedUtf16Le20Bytes()
    {
        byte[] w2ku = VhdParentPath.EncodeWindows("../t.vhd");
        Assert.Equal(Encoding.Unicode.GetBytes(@".\..\t.vhd"), w2ku);
        Assert.Equal(20, w2ku.Length);
        Assert.Equal("./../t.vhd", VhdParentPath.Decode(VhdParentLocator.W2ku, w2ku));
        Assert.Equal("./../t.vhd", VhdParentPath.Decode(VhdParentLocator.W2ru, w2ku));
    }

    [Fact]
    public void EncodeWindows_SameDirectory_DropsOneDotSlash()
    {
        Assert.Equal(Encoding.Unicode.GetBytes(@".\p.vhd"), VhdParentPath.EncodeWindows("./p.vhd"));
    }

    [Theory]
    [InlineData(@"C:\srv\p.vhd", "/srv/p.vhd")]
    [InlineData(@"c:\srv\p.vhd", "/srv/p.vhd")]
    [InlineData(@"D:\srv\p.vhd", "D:/srv/p.vhd")]
    public void Decode_WindowsDrivePrefix_StripsOnlyC(string stored, string expected)
    {
        Assert.Equal(expected, VhdParentPath.Decode(VhdParentLocator.W2ru, Encoding.Unicode.GetBytes(stored)));
    }

    [Fact]
    public void Decode_BadPayloads_ReturnsNull()
    {
        Assert.Null(VhdParentPath.Decode(VhdParentLocator.MacX, "http://x"u8));
        Assert.Null(VhdParentPath.Decode(VhdParentLocator.MacX, [(byte)'f', 0xC3, 0xA9]));
        Assert.Null(VhdParentPath.Decode(VhdParentLocator.Wi2k, "file://x"u8));
        Assert.Null(VhdParentPath.Decode(VhdParentLocator.W2ku, Encoding.Unicode.GetBytes("é.vhd")));
        Assert.Null(VhdParentPath.Decode(VhdParentLocator.MacX, []));
    }

    [Fact]
    public void Relative_AnyPaths_ResolvesBackToParent()
    {
        Gen.Select(s_absolute, s_absolute).Sample((child, parent) =>
        {
            string relative = VhdParentPath.Relative(child, parent);
            string dir = Path.GetDirectoryName(child)!;
            Assert.Equal(parent, Path.GetFullPath(Path.Combine(dir, relative)));

            // Both encodings decode to a name that resolves to the same file.
            string? macx = VhdParentPath.Decode(VhdParentLocator.MacX, VhdParentPath.EncodeMacX(relative));
            string? windows = VhdParentPath.Decode(VhdParentLocator.W2ku, VhdParentPath.EncodeWindows(relative));
            Assert.Equal(parent, Path.GetFullPath(Path.Combine(dir, macx!)));
            Assert.Equal(parent, Path.GetFullPath(Path.Combine(dir, windows!)));
        });
    }
}
