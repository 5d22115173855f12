using Xunit;

namespace Tapdisk.VhdUtil.Tests;

/// <summary>The one getopt both tools use (src/Shared/GetOpt.cs), as glibc's behaves for blktap's tools.</summary>
public sealed class GetOptTests
{
    [Fact]
    public void ClusteredFlags_AttachedAndSeparateArguments_OperandsAnywhere()
    {
        var opt = new GetOpt(["first", "-rn", "disk.vhd", "second", "-s10", "--", "-r"], "n:s:r");
        Assert.Equal(('r', null), Next(opt));
        Assert.Equal(('n', "disk.vhd"), Next(opt));
        Assert.Equal(('s', "10"), Next(opt));
        Assert.Equal((-1, null), Next(opt));
        Assert.Equal(["first", "second", "-r"], opt.Operands);
    }

    [Fact]
    public void UnknownOptionAndMissingArgument_Question_WithGlibcsComplaints()
    {
        var error = new StringWriter();
        var opt = new GetOpt(["-x", "-:", "-n"], "n:", "create", error);
        Assert.Equal(('?', null), Next(opt));
        Assert.Equal(('?', null), Next(opt));
        Assert.Equal(('?', null), Next(opt));
        Assert.Equal((-1, null), Next(opt));
        Assert.Equal("create: invalid option -- 'x'\ncreate: invalid option -- ':'\ncreate: option requires an argument -- 'n'\n", error.ToString());
    }

    private static (int Option, string? Argument) Next(GetOpt opt)
    {
        int c = opt.Next(out string? argument);
        return (c, argument);
    }
}
