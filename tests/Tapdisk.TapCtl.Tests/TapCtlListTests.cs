using System.Net.Sockets;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>tap-ctl list: discovery, order, formats and filters (control-xen.md 5.3, reference-transcript.md 2 and 9).</summary>
public sealed class TapCtlListTests : ControlDirectoryTest
{
    [Fact]
    public void List_Nothing_PrintsNothing() => AssertOk(TapCtl("list"));

    [Fact]
    public void List_IdleTapdisk_PidOnlyRow()
    {
        StartFake(31243);

        AssertOk(TapCtl("list"), "pid=31243\n");
    }

    [Fact]
    public void List_VbdsOfOneTapdisk_ReverseAttachOrder()
    {
        FakeTapdisk fake = StartFake(8755);
        for (int i = 0; i < 6; i++)
        {
            Allocate();
        }

        foreach (string minor in new[] { "5", "3", "4" })
        {
            AssertOk(TapCtl("attach", "-p", "8755", "-m", minor));
        }

        AssertOk(TapCtl("open", "-p", "8755", "-m", "3", "-a", "vhd:/srv/a.vhd"));
        AssertOk(TapCtl("pause", "-p", "8755", "-m", "3"));

        AssertOk(
            TapCtl("list", "-p", "8755"),
            "pid=8755 minor=4 state=0\npid=8755 minor=3 state=0x2a args=vhd:/srv/a.vhd\npid=8755 minor=5 state=0\n");
        Assert.Single(fake.RequestsOfType(Control.TapdiskMessageType.List));
    }

    [Fact]
    public void List_TwoTapdisksAndOrphans_GlobOrderThenOrphansLexicographic()
    {
        FakeTapdisk first = StartFake(31243);
        StartFake(31408);
        for (int i = 0; i < 11; i++)
        {
            Allocate();
        }

        AssertOk(TapCtl("attach", "-p", "31243", "-m", "0"));
        AssertOk(TapCtl("open", "-p", "31243", "-m", "0", "-a", "vhd:/srv/tx/a.vhd"));
        AssertOk(TapCtl("attach", "-p", "31243", "-m", "1"));
        AssertOk(TapCtl("open", "-p", "31243", "-m", "1", "-a", "aio:/srv/tx/b.img", "-R"));
        for (int i = 3; i <= 9; i++)
        {
            AssertOk(TapCtl("free", "-m", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        // Markers left: 0, 1 (served), 2 and 10 (orphans; "tapdisk-10" sorts before "tapdisk-2").
        AssertOk(
            TapCtl("list"),
            "pid=31243 minor=1 state=0 args=aio:/srv/tx/b.img\n" +
            "pid=31243 minor=0 state=0 args=vhd:/srv/tx/a.vhd\n" +
            "pid=31408\n" +
            "minor=10\n" +
            "minor=2\n");
        Assert.Single(first.RequestsOfType(Control.TapdiskMessageType.List));
    }

    [Fact]
    public void List_Filters_ExactMatches()
    {
        StartFake(31243);
        StartFake(31408);
        for (int i = 0; i < 4; i++)
        {
            Allocate();
        }

        AssertOk(TapCtl("attach", "-p", "31243", "-m", "0"));
        AssertOk(TapCtl("open", "-p", "31243", "-m", "0", "-a", "vhd:/srv/tx/a.vhd"));
        AssertOk(TapCtl("attach", "-p", "31243", "-m", "1"));
        AssertOk(TapCtl("open", "-p", "31243", "-m", "1", "-a", "vhd:/srv/tx/b.vhd"));
        AssertOk(TapCtl("attach", "-p", "31408", "-m", "2"));
        AssertOk(TapCtl("open", "-p", "31408", "-m", "2", "-a", "aio:/srv/tx/c.img"));

        AssertOk(TapCtl("list", "-m", "2"), "pid=31408 minor=2 state=0 args=aio:/srv/tx/c.img\n");
        AssertOk(TapCtl("list", "-m", "3"), "minor=3\n");
        AssertOk(TapCtl("list", "-t", "vhd"), "pid=31243 minor=1 state=0 args=vhd:/srv/tx/b.vhd\npid=31243 minor=0 state=0 args=vhd:/srv/tx/a.vhd\n");
        AssertOk(TapCtl("list", "-f", "/srv/tx/b.vhd"), "pid=31243 minor=1 state=0 args=vhd:/srv/tx/b.vhd\n");
        AssertOk(TapCtl("list", "-p", "31408"), "pid=31408 minor=2 state=0 args=aio:/srv/tx/c.img\n");
        AssertOk(TapCtl("list", "-p", "999999"));
    }

    [Fact]
    public void List_UnreachableTapdisks_SkippedSilently()
    {
        StartFake(500);
        Allocate();

        // A stale socket (a killed tapdisk), a plain file and a silent server all named ctl<pid>.
        string stale = Path.Combine(Root, "ctl600");
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            s.Bind(new UnixDomainSocketEndPoint(Path.Combine(Root, "bound")));
            File.Move(Path.Combine(Root, "bound"), stale);
        }

        File.WriteAllText(Path.Combine(Root, "ctl700"), string.Empty);
        using SilentTapdisk silent = SilentTapdisk.Start(Path.Combine(Root, "ctl800"), readRequest: true);

        AssertOk(TapCtl("list"), "pid=500\nminor=0\n");
        AssertOk(TapCtl("list", "-p", "600"));
        AssertOk(TapCtl("list", "-p", "800"));
    }

    [Fact]
    public void List_OnTty_TableWithDashes()
    {
        StartFake(25681);
        FakeTapdisk busy = StartFake(25874);
        Allocate();
        Allocate();
        AssertOk(TapCtl("attach", "-p", "25874", "-m", "0"));
        AssertOk(TapCtl("open", "-p", "25874", "-m", "0", "-a", "aio:/srv/img/a.raw"));
        AssertOk(TapCtl("close", "-p", "25874", "-m", "0"));
        AssertOk(TapCtl("attach", "-p", "25874", "-m", "1"));
        AssertOk(TapCtl("open", "-p", "25874", "-m", "1", "-a", "aio:/srv/img/b.raw"));
        AssertOk(TapCtl("pause", "-p", "25874", "-m", "1"));

        ProcessResult r = TapCtlProcess.RunOnTty(Root, "list");

        Assert.Equal(
            "   25681    -    -          - -\n" +
            "   25874    1 0x2a        aio /srv/img/b.raw\n" +
            "   25874    0  0x2          - -\n",
            r.StandardOutput);
        Assert.NotEmpty(busy.Requests);
    }
}
