using System.Globalization;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// The libxl hotplug script "block-tap" against a XenStore stand-in: xenstore-read/-write/-list scripts first on PATH,
/// backed by a directory tree (key a/b/c is the directory XS_ROOT/a/b/c, its value the file .value in it).
/// </summary>
public sealed class BlockTapHotplugTests : IntegrationTest
{
    private const string Backend = "backend/vbd3/1/51712";

    private readonly string _store;
    private readonly string _bin;

    public BlockTapHotplugTests()
    {
        _store = Scratch.File("xenstore");
        _bin = Scratch.File("bin");
        Directory.CreateDirectory(_store);
        Directory.CreateDirectory(_bin);
        WriteScript("xenstore-read", """
            for k in "$@"; do
                [ -f "$XS_ROOT/$k/.value" ] || { echo "xenstore-read: couldn't read path $k" >&2; exit 1; }
                cat "$XS_ROOT/$k/.value"; echo
            done
            """);
        WriteScript("xenstore-write", """
            [ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: xenstore-write key value [key value]..." >&2; exit 1; }
            while [ $# -ge 2 ]; do
                mkdir -p "$XS_ROOT/$1" && printf '%s' "$2" > "$XS_ROOT/$1/.value" || exit 1
                shift 2
            done
            """);
        WriteScript("xenstore-list", """
            [ -d "$XS_ROOT/$1" ] || { echo "xenstore-list: couldn't list path $1" >&2; exit 1; }
            for d in "$XS_ROOT/$1"/*/; do [ -d "$d" ] && basename "$d"; done
            exit 0
            """);
    }

    private void WriteScript(string name, string body)
    {
        string path = Path.Combine(_bin, name);
        File.WriteAllText(path, "#!/bin/bash\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
    }

    private void XsWrite(string key, string value)
    {
        Directory.CreateDirectory(Path.Combine(_store, key));
        File.WriteAllText(Path.Combine(_store, key, ".value"), value);
    }

    private string? XsRead(string key)
    {
        string file = Path.Combine(_store, key, ".value");
        return File.Exists(file) ? File.ReadAllText(file) : null;
    }

    private ProcessResult BlockTap(string command)
    {
        var env = new Dictionary<string, string>(Environment)
        {
            ["PATH"] = _bin + ":" + (System.Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin"),
            ["XS_ROOT"] = _store,
            ["XENBUS_PATH"] = Backend,
            ["XENBUS_TYPE"] = "vbd3",
            ["TAP_CTL"] = Binaries.TapCtl,
            ["BLOCK_TAP_LOCK_DIR"] = Scratch.File("lock"),
        };
        return ExternalTool.Run(ExternalTool.Require("bash"), [Binaries.BlockTap, command], stdin: null, HangGuard, env);
    }

    [Fact]
    public void AddThenRemove_PublishesNbdPathAndDestroys()
    {
        string file = CreateVhd("guest.vhd", 64);
        XsWrite(Backend + "/params", "vhd:" + file);
        XsWrite(Backend + "/mode", "w");
        XsWrite(Backend + "/frontend-id", "1");

        ProcessResult add = BlockTap("add");
        Assert.True(add.ExitCode == 0, $"block-tap add exited {add.ExitCode}\n{add.StandardOutput}\n{add.StandardError}");
        int pid = int.Parse(XsRead(Backend + "/pid") ?? "missing pid", CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        int minor = int.Parse(XsRead(Backend + "/minor") ?? "missing minor", CultureInfo.InvariantCulture);
        Assert.Equal("connected", XsRead(Backend + "/hotplug-status"));
        Assert.Equal(NbdSocket(pid, minor), XsRead(Backend + "/physical-device-path"));
        Assert.Equal(64L * 1024 * 1024, NbdExportSize(NbdSocket(pid, minor)));
        QemuIo(NbdSocket(pid, minor), "write -P 0x61 0 1M", "read -P 0x61 0 1M");

        Dictionary<string, string> row = Assert.Single(List());
        Assert.Equal(pid.ToString(CultureInfo.InvariantCulture), row["pid"]);
        Assert.Equal("vhd:" + file, row["args"]);

        ProcessResult remove = BlockTap("remove");
        Assert.True(remove.ExitCode == 0, $"block-tap remove exited {remove.ExitCode}\n{remove.StandardOutput}\n{remove.StandardError}");
        WaitForExit(pid);
        Assert.Empty(List());
        Assert.False(File.Exists(Marker(minor)), "marker not freed");
        Assert.False(File.Exists(NbdSocket(pid, minor)), "NBD socket left behind");
        Assert.Contains("is valid", VhdUtilOk("check", "-n", file), StringComparison.Ordinal);
    }

    [Fact]
    public void AddReadOnly_OpensReadOnly()
    {
        string file = CreateVhd("ro.vhd", 16);
        XsWrite(Backend + "/params", "vhd:" + file);
        XsWrite(Backend + "/mode", "r");
        XsWrite(Backend + "/frontend-id", "1");

        ProcessResult add = BlockTap("add");
        Assert.True(add.ExitCode == 0, $"block-tap add exited {add.ExitCode}\n{add.StandardError}");
        int pid = int.Parse(XsRead(Backend + "/pid") ?? "missing pid", CultureInfo.InvariantCulture);
        TrackTapdisk(pid);
        int minor = int.Parse(XsRead(Backend + "/minor") ?? "missing minor", CultureInfo.InvariantCulture);

        // The export is read-only: a writer is refused, a reader is served.
        QemuIoReadOnly(NbdSocket(pid, minor), "read -P 0 0 1M");
        ProcessResult write = ExternalTool.Run(ExternalTool.Require("qemu-io"), ["-f", "raw", "-c", "write -P 1 0 4k", NbdUri(NbdSocket(pid, minor))], stdin: null, HangGuard);
        Assert.True(write.ExitCode != 0 || (write.StandardOutput + write.StandardError).Contains("denied", StringComparison.OrdinalIgnoreCase), "write to a read-only disk succeeded:\n" + write.StandardOutput);

        Assert.Equal(0, BlockTap("remove").ExitCode);
        WaitForExit(pid);
    }

    [Fact]
    public void Add_ParamsMissing_Exit1_HotplugStatusError()
    {
        XsWrite(Backend + "/mode", "w");
        XsWrite(Backend + "/frontend-id", "1");

        ProcessResult add = BlockTap("add");
        Assert.Equal(1, add.ExitCode);
        Assert.Equal("error", XsRead(Backend + "/hotplug-status"));
        Assert.NotNull(XsRead(Backend + "/hotplug-error"));
        Assert.Empty(List());
        Assert.Empty(Directory.EnumerateFiles(Root, "ctl*"));
    }

    [Fact]
    public void Add_ImageMissing_Exit1_NothingLeftBehind()
    {
        XsWrite(Backend + "/params", "vhd:" + Scratch.File("absent.vhd"));
        XsWrite(Backend + "/mode", "w");
        XsWrite(Backend + "/frontend-id", "1");

        ProcessResult add = BlockTap("add");
        Assert.Equal(1, add.ExitCode);
        Assert.Equal("error", XsRead(Backend + "/hotplug-status"));

        // The failed open detached the minor, so the spawned tapdisk exited and the marker was freed.
        WaitUntil(() => !Directory.EnumerateFiles(Root, "ctl*").Any(), "the spawned tapdisk to exit");
        Assert.Empty(List());
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(Root, "tapdisk")));
    }
}
