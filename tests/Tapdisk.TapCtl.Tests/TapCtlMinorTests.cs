using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>allocate and free (control-xen.md 5.5).</summary>
public sealed class TapCtlMinorTests : ControlDirectoryTest
{
    [Fact]
    public void Allocate_LowestFreeMinor_PrintsMarkerPath()
    {
        AssertOk(TapCtl("allocate"), Marker(0) + "\n");
        AssertOk(TapCtl("allocate"), Marker(1) + "\n");
        AssertOk(TapCtl("allocate"), Marker(2) + "\n");
        AssertOk(TapCtl("free", "-m", "1"));

        AssertOk(TapCtl("allocate"), Marker(1) + "\n");
        AssertOk(TapCtl("allocate"), Marker(3) + "\n");
    }

    [Fact]
    public void Allocate_CreatesPrivateDirectoryAndMarker()
    {
        Allocate();

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(Root, "tapdisk")));
        Assert.Equal(0, new FileInfo(Marker(0)).Length);
        Assert.Equal(UnixFileMode.None, File.GetUnixFileMode(Marker(0)) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.OtherRead));
    }

    [Fact]
    public void Allocate_AllMinorsUsed_Enospc()
    {
        Directory.CreateDirectory(Path.Combine(Root, "tapdisk"));
        for (int i = 0; i < 16384; i++)
        {
            File.Create(Marker(i)).Dispose();
        }

        AssertFails(TapCtl("allocate"), 28, "No space left on device\n");
    }

    [Fact]
    public void Free_Twice_Enoent()
    {
        Allocate();

        AssertOk(TapCtl("free", "-m", "0"));
        Assert.False(File.Exists(Marker(0)));
        AssertFails(TapCtl("free", "-m", "0"), 2, "No such file or directory\n");
    }

    [Fact]
    public void Free_WhileTapdiskHoldsMarkerLock_Eagain()
    {
        FakeTapdisk fake = StartFake(41001);
        int minor = AllocateAndAttach(fake);

        AssertFails(TapCtl("free", "-m", minor.ToString(System.Globalization.CultureInfo.InvariantCulture)), 11, "Resource temporarily unavailable\n");
        Assert.True(File.Exists(Marker(minor)));

        AssertOk(TapCtl("detach", "-p", "41001", "-m", "0"));
        AssertOk(TapCtl("free", "-m", "0"));
    }
}
