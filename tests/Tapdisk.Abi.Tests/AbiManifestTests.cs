using Xunit;

namespace Tapdisk.Abi.Tests;

public sealed class AbiManifestTests
{
    [Fact]
    public void Parse_AllEntryKinds_ReadsTypesMembersValuesAndTargets()
    {
        AbiProbeGroup g = AbiManifest.Parse("g", """
            # comment
            arch x86_64
            define _GNU_SOURCE
            include <sys/stat.h>
            c typedef int foo_t;
            sizeof struct stat 144 => Interop.Libc.Stat
            offsetof struct stat st_mode 24 => Interop.Libc.Stat.Mode
            fieldsize struct stat st_mode 4 => Interop.Libc.Stat.Mode
            const BLKGETSIZE64 0x80081272 => -
            const NEG -5 => -
            """);

        Assert.Equal(["#define _GNU_SOURCE", "#include <sys/stat.h>", "typedef int foo_t;"], g.Preamble);
        Assert.Equal(5, g.Entries.Count);
        Assert.Equal("sizeof(struct stat)", g.Entries[0].CExpression);
        Assert.Equal("offsetof(struct stat, st_mode)", g.Entries[1].CExpression);
        Assert.Equal(24, g.Entries[1].Value);
        Assert.Equal("Interop.Libc.Stat.Mode", g.Entries[2].Target);
        Assert.Equal(AbiProbeKind.FieldSize, g.Entries[2].Kind);
        Assert.Equal(0x80081272, g.Entries[3].Value);
        Assert.Null(g.Entries[3].Target);
        Assert.Equal(-5, g.Entries[4].Value);
        Assert.Equal("g.probe:7: offsetof(struct stat, st_mode) == 24", g.Entries[1].ToString());
    }

    [Theory]
    [InlineData("arch x86_64\nconst A 1\n", "g.probe:2: missing '=> TARGET'")]
    [InlineData("arch x86_64\nconst A zz => -\n", "g.probe:2: bad value 'zz'")]
    [InlineData("arch x86_64\nconst A 1 => -\ninclude <x.h>\n", "g.probe:3: 'include' after the first entry")]
    [InlineData("arch x86_64\nsizeof 4 => -\n", "g.probe:2: 'sizeof' needs C-TYPE VALUE")]
    [InlineData("arch x86_64\nfrob A 1 => -\n", "g.probe:2: unknown keyword 'frob'")]
    [InlineData("const A 1 => -\n", "g.probe:0: no 'arch' line")]
    public void Parse_MalformedLine_ThrowsNamingTheLine(string text, string expected)
    {
        FormatException ex = Assert.Throws<FormatException>(() => AbiManifest.Parse("g", text));

        Assert.StartsWith(expected, ex.Message, StringComparison.Ordinal);
    }
}
