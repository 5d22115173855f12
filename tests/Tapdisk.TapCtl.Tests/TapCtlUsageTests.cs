using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>Usage texts, streams and exit codes (reference-transcript.md section 1).</summary>
public sealed class TapCtlUsageTests : ControlDirectoryTest
{
    private const string MainUsage =
        "usage: tap-ctl COMMAND [OPTIONS]\n" +
        "COMMAND := { list | allocate | free | create | destroy | spawn | attach | detach | open | close | pause | unpause | stats }\n";

    private const string ListUsage =
        "usage: list [-h] [-p pid] [-m minor] [-t type] [-f file]\n\nLists tapdisks in the following format:\n     pid minor state       type file\n";

    public static TheoryData<string, string> CommandUsages => new()
    {
        { "list", ListUsage },
        { "allocate", "usage: allocate\n" },
        { "free", "usage: free <-m minor>\n" },
        { "create", "usage: create <-a type:/path/to/file> [-d device name] [-R readonly] [-e <minor> stack on existing tapdisk for the parent chain] [-r turn on read caching into leaf node] [-2 <path> use secondary image (in mirror mode if no -s)] [-s fail over to the secondary image on ENOSPC] [-t request timeout in seconds] [-D no O_DIRECT] [-C <path/to/logfile> insert log layer to track changed blocks]\n" },
        { "destroy", "usage: destroy <-p pid> <-m minor> [-t timeout secs]\n" },
        { "spawn", "usage: spawn\n" },
        { "detach", "usage: detach <-p pid> <-m minor>\n" },
        { "open", "usage: open <-p pid> <-m minor> <-a type:/path/to/file> [-R readonly] [-e <minor> stack on existing tapdisk for the parent chain] [-r turn on read caching into leaf node] [-2 <path> use secondary image (in mirror mode if no -s)] [-s fail over to the secondary image on ENOSPC] [-t request timeout in seconds] [-D no O_DIRECT] [-C </path/to/logfile> insert log layer to track changed blocks] [-E read encryption key from stdin]\n" },
        { "close", "usage: close <-p pid> <-m minor> [-f force] [-t timeout secs]\n" },
        { "pause", "usage: pause <-p pid> <-m minor> [-t timeout secs]\n" },
        { "unpause", "usage: unpause <-p pid> <-m minor> [-a type:/path/to/file] [-2 secondary] [-c </path/to/logfile> insert log layer to track changed blocks]\n" },
        { "stats", "usage: stats <-p pid> <-m minor>\n\nPrints a Python dictionary with the VBD stats. The images are listed in reverse order (leaf to root)\n" },
    };

    public static TheoryData<string, string> RequiredArguments => new()
    {
        { "free", "usage: free <-m minor>\n" },
        { "destroy", "usage: destroy <-p pid> <-m minor> [-t timeout secs]\n" },
        { "attach", "usage: attach <-p pid> <-m minor>\n" },
        { "detach", "usage: detach <-p pid> <-m minor>\n" },
        { "close", "usage: close <-p pid> <-m minor> [-f force] [-t timeout secs]\n" },
        { "pause", "usage: pause <-p pid> <-m minor> [-t timeout secs]\n" },
        { "stats", "usage: stats <-p pid> <-m minor>\n\nPrints a Python dictionary with the VBD stats. The images are listed in reverse order (leaf to root)\n" },
    };

    [Theory]
    [InlineData("")]
    [InlineData("-h")]
    [InlineData("bogus")]
    [InlineData("check")]
    [InlineData("averyveryverylongcommandword")]
    public void NoOrUnknownCommand_CommandListOnStdout_Exit0(string command) => AssertOk(command.Length == 0 ? TapCtl() : TapCtl(command), MainUsage);

    [Theory]
    [MemberData(nameof(CommandUsages))]
    public void Help_UsageOnStdout_Exit0(string command, string usage) => AssertOk(TapCtl(command, "-h"), usage);

    [Fact]
    public void AttachHelp_UsageOnStderr_Exit0() => AssertFails(TapCtl("attach", "-h"), 0, "usage: attach <-p pid> <-m minor>\n");

    [Theory]
    [MemberData(nameof(RequiredArguments))]
    public void MissingRequiredOption_UsageAndEinvalOnStderr_Exit22(string command, string usage) =>
        AssertFails(TapCtl(command), 22, usage + "Invalid argument\n");

    [Fact]
    public void CreateWithoutArgs_UsageOnStderr_Exit22() => Assert.Equal(22, TapCtl("create", "-R").ExitCode);

    [Fact]
    public void OpenWithoutImage_UsageOnStderr_Exit22() => Assert.Equal(22, TapCtl("open", "-p", "1", "-m", "0").ExitCode);

    [Fact]
    public void MinusOne_CountsAsMissing() => AssertFails(TapCtl("attach", "-p", "-1", "-m", "0"), 22, "usage: attach <-p pid> <-m minor>\nInvalid argument\n");

    [Fact]
    public void InvalidOption_GetoptLineWithSubcommandName_Exit22() =>
        AssertFails(TapCtl("list", "-x"), 22, "list: invalid option -- 'x'\n" + ListUsage + "Invalid argument\n");

    [Fact]
    public void MissingOptionArgument_GetoptLine_Exit22() =>
        AssertFails(TapCtl("close", "-m", "0", "-p"), 22, "close: option requires an argument -- 'p'\nusage: close <-p pid> <-m minor> [-f force] [-t timeout secs]\nInvalid argument\n");

    [Fact]
    public void Debug_IsRemovedBeforeGetopt() => AssertOk(TapCtl("list", "--debug"));
}
