using Tapdisk.Control;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>spawn and create with TAPDISK_EXEC pointing at a stand-in script (control-xen.md 4.1, 5.4).</summary>
public sealed class TapCtlSpawnTests : ControlDirectoryTest
{
    [Fact]
    public void Spawn_PrintsPidParsedFromControlPath()
    {
        string exec = Script("echo \"$BLKTAP_CONTROL_DIR/ctl4242\"");

        AssertOk(RunWithExec(exec, "spawn"), "4242\n");
    }

    [Fact]
    public void Spawn_OnTty_SpawnedWithPid()
    {
        string exec = Script("echo \"$BLKTAP_CONTROL_DIR/ctl4243\"");

        ProcessResult r = TapCtlProcess.RunOnTty(Root, ["spawn"], new Dictionary<string, string> { ["TAPDISK_EXEC"] = exec });

        Assert.Equal("tapdisk spawned with pid 4243\n", r.StandardOutput);
    }

    [Fact]
    public void Spawn_ChildFails_ExitStatusIsTheError() => AssertFails(RunWithExec(Script("exit 22"), "spawn"), 22, "Invalid argument\n");

    [Fact]
    public void Spawn_Garbage_ParsingIdFails() => AssertFails(RunWithExec(Script("echo hello"), "spawn"), 1, "Operation not permitted\n");

    [Fact]
    public void Spawn_MissingBinary_Enoent() => AssertFails(RunWithExec(Path.Combine(Root, "no-such-tapdisk"), "spawn"), 2, "No such file or directory\n");

    [Fact]
    public void Create_AllocatesSpawnsAttachesOpens_PrintsMarker()
    {
        FakeTapdisk fake = StartFake(5151);
        string exec = Script("echo \"$BLKTAP_CONTROL_DIR/ctl5151\"");

        AssertOk(RunWithExec(exec, "create", "-a", "aio:/srv/a.raw", "-R", "-d", "ignored"), Marker(0) + "\n");

        RecordedRequest[] requests = [.. fake.Requests];
        Assert.Equal([TapdiskMessageType.Attach, TapdiskMessageType.Open], requests.Select(r => r.Message.Type));
        Assert.Equal(TapdiskOpenFlags.ReadOnly, requests[1].Message.ParamsFlags);
        Assert.Equal(-1, requests[1].Message.ParamsParentMinor);
        AssertOk(TapCtl("list"), "pid=5151 minor=0 state=0 args=aio:/srv/a.raw\n");
    }

    [Fact]
    public void Create_OpenFails_DetachesFreesAndReportsOpenError()
    {
        FakeTapdisk fake = StartFake(5152);
        fake.OpenFailures["aio:/nonexistent"] = 2;
        string exec = Script("echo \"$BLKTAP_CONTROL_DIR/ctl5152\"");

        AssertFails(RunWithExec(exec, "create", "-a", "aio:/nonexistent"), 2, "No such file or directory\n");
        AssertFails(RunWithExec(exec, "create", "-a", "noColon"), 22, "Invalid argument\n");

        Assert.Equal(
            [TapdiskMessageType.Attach, TapdiskMessageType.Open, TapdiskMessageType.Detach, TapdiskMessageType.Attach, TapdiskMessageType.Open, TapdiskMessageType.Detach],
            fake.Requests.Select(r => r.Message.Type));
        Assert.False(File.Exists(Marker(0)));
        AssertOk(TapCtl("list"), "pid=5152\n");
    }

    [Fact]
    public void Create_SpawnFails_FreesMinor()
    {
        AssertFails(RunWithExec(Script("exit 5"), "create", "-a", "aio:/x"), 5, "Input/output error\n");

        Assert.False(File.Exists(Marker(0)));
    }

    private ProcessResult RunWithExec(string exec, params string[] args) =>
        TapCtlProcess.Run(Root, args, null, new Dictionary<string, string> { ["TAPDISK_EXEC"] = exec });

    private string Script(string body)
    {
        string path = Path.Combine(Root, "fake-tapdisk-" + Guid.NewGuid().ToString("N")[..8]);
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }
}
