using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>A fresh control directory per test, fake tapdisks torn down afterwards, and tap-ctl helpers.</summary>
public abstract class ControlDirectoryTest : IAsyncLifetime
{
    private readonly List<FakeTapdisk> _fakes = [];

    protected TempDirectory Dir { get; } = TempDirectory.ForSockets();

    protected string Root => Dir.Path;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (FakeTapdisk fake in _fakes)
        {
            await fake.DisposeAsync();
        }

        Dir.Dispose();
    }

    protected ProcessResult TapCtl(params string[] args) => TapCtlProcess.Run(Root, args);

    protected FakeTapdisk StartFake(int pid)
    {
        FakeTapdisk fake = FakeTapdisk.Start(Root, pid);
        _fakes.Add(fake);
        return fake;
    }

    protected string Marker(int minor) => Path.Combine(Root, "tapdisk", "tapdisk-" + minor);

    /// <summary>tap-ctl allocate, checked; returns the minor.</summary>
    protected int Allocate()
    {
        ProcessResult r = TapCtl("allocate");
        Assert.True(r.ExitCode == 0, r.ToString());
        string path = r.StandardOutput.TrimEnd('\n');
        Assert.StartsWith(Path.Combine(Root, "tapdisk", "tapdisk-"), path, StringComparison.Ordinal);
        return int.Parse(path[(path.LastIndexOf('-') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Allocates and attaches a minor on a fake, checked.</summary>
    protected int AllocateAndAttach(FakeTapdisk fake)
    {
        int minor = Allocate();
        AssertOk(TapCtl("attach", "-p", fake.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "-m", minor.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return minor;
    }

    protected static void AssertOk(ProcessResult r, string stdout = "")
    {
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(stdout, r.StandardOutput);
        Assert.Equal(string.Empty, r.StandardError);
    }

    protected static void AssertFails(ProcessResult r, int exitCode, string stderr, string stdout = "")
    {
        Assert.True(r.ExitCode == exitCode, r.ToString());
        Assert.Equal(stderr, r.StandardError);
        Assert.Equal(stdout, r.StandardOutput);
    }
}
