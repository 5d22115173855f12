using Xunit;

namespace Tapdisk.Logging.Tests;

/// <summary>tapdisk.&lt;pid&gt;.log: buffered, errors flushed and kept, reopened after a move, removed at a clean exit.</summary>
public sealed class LogFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tdlog-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void InfoOnly_BufferedThenRemovedAtCleanExit()
    {
        string logDir = Path.Combine(_dir, "blktap");
        using var file = LogFile.Open(logDir, "tapdisk", 42);
        Assert.Equal(Path.Combine(logDir, "tapdisk.42.log"), file.Path);
        file.Write(6, "hello");
        Assert.Equal(0, new FileInfo(file.Path).Length); // still in the 16 KiB buffer
        file.Flush();
        Assert.EndsWith("INFO: hello\n", File.ReadAllText(file.Path), StringComparison.Ordinal);
        Assert.False(file.IsPrecious);
        file.Close(cleanExit: true);
        Assert.False(File.Exists(file.Path));
    }

    [Fact]
    public void Error_FlushedAtOnce_AndKeptAtCleanExit()
    {
        using var file = LogFile.Open(_dir, "tapdisk", 43);
        file.Write(3, "it broke");
        Assert.Contains("ERROR: it broke", File.ReadAllText(file.Path), StringComparison.Ordinal);
        Assert.True(file.IsPrecious);
        file.Close(cleanExit: true);
        Assert.True(File.Exists(file.Path));
    }

    [Fact]
    public void Reopen_AfterMove_WritesANewFile()
    {
        using var file = LogFile.Open(_dir, "tapdisk", 44);
        file.Write(6, "before");
        File.Move(file.Path, file.Path + ".1");
        file.Reopen();
        file.Write(6, "after");
        file.MarkPrecious();
        Assert.Contains("before", File.ReadAllText(file.Path + ".1"), StringComparison.Ordinal);
        string now = File.ReadAllText(file.Path);
        Assert.Contains("after", now, StringComparison.Ordinal);
        Assert.DoesNotContain("before", now, StringComparison.Ordinal);
        file.Close(cleanExit: true);
        Assert.True(File.Exists(file.Path));
    }
}
