using System.Buffers.Binary;
using System.Text;
using Tapdisk.Control;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.TapCtl.Tests;

/// <summary>The bytes tap-ctl sends and how it reads the replies (control-xen.md 2, 3.5; reference-transcript.md 2 and 8).</summary>
public sealed class TapCtlVbdTests : ControlDirectoryTest
{
    private const int Pid = 1333;

    [Fact]
    public void Attach_SendsTypeAndMinorOnly()
    {
        FakeTapdisk fake = StartFake(Pid);
        for (int i = 0; i < 4; i++)
        {
            Allocate();
        }

        AssertOk(TapCtl("attach", "-p", "1333", "-m", "3"));

        byte[] expected = new byte[TapdiskMessage.Size];
        expected[0] = 5;
        expected[2] = 3;
        Assert.Equal(expected, fake.RequestsOfType(TapdiskMessageType.Attach).Single().Message.Bytes.ToArray());
    }

    [Fact]
    public void Attach_Twice_EinvalWhateverTheDaemonSaid()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        AssertFails(TapCtl("attach", "-p", "1333", "-m", "0"), 22, "Invalid argument\n");
    }

    [Fact]
    public void Open_PlainRequest_MatchesReferenceCapture()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/tx-wire/w.vhd"));

        RecordedRequest open = fake.RequestsOfType(TapdiskMessageType.Open).Single();
        byte[] expected = new byte[TapdiskMessage.Size];
        expected[0] = 7;
        Encoding.ASCII.GetBytes("vhd:/srv/tx-wire/w.vhd").CopyTo(expected, 20);
        BinaryPrimitives.WriteInt32LittleEndian(expected.AsSpan(276), -1);
        Assert.Equal(expected, open.Message.Bytes.ToArray());
        Assert.Empty(open.Trailer);
    }

    [Fact]
    public void Open_EveryOption_FlagsFieldsAndLogTrailer()
    {
        FakeTapdisk fake = StartFake(Pid);
        Allocate();
        Allocate();
        Allocate();
        AssertOk(TapCtl("attach", "-p", "1333", "-m", "2"));

        AssertOk(TapCtl("open", "-m", "2", "-a", "vhd:/a.vhd", "-R", "-D", "-r", "-e", "7", "-2", "aio:/b.img", "-s", "-t", "30", "-C", "/var/cbt.log", "-p", "1333"));

        RecordedRequest open = fake.RequestsOfType(TapdiskMessageType.Open).Single();
        TapdiskMessage m = open.Message;
        Assert.Equal(2, m.Cookie);
        Assert.Equal(
            TapdiskOpenFlags.ReadOnly | TapdiskOpenFlags.NoODirect | TapdiskOpenFlags.AddLcache | TapdiskOpenFlags.ReuseParent
                | TapdiskOpenFlags.Secondary | TapdiskOpenFlags.Standby | TapdiskOpenFlags.AddLog,
            m.ParamsFlags);
        Assert.Equal(0x3F2u, BinaryPrimitives.ReadUInt32LittleEndian(m.Bytes[8..]));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(m.Bytes[12..]));
        Assert.Equal(7, BinaryPrimitives.ReadInt32LittleEndian(m.Bytes[276..]));
        Assert.Equal(30, BinaryPrimitives.ReadUInt16LittleEndian(m.Bytes[280..]));
        Assert.Equal("aio:/b.img", Encoding.ASCII.GetString(m.Bytes.Slice(282, 10)));
        Assert.Equal(0, m.Bytes[292]);
        Assert.Equal("vhd:/a.vhd", m.ParamsPath);

        byte[] log = new byte[256];
        Encoding.ASCII.GetBytes("/var/cbt.log").CopyTo(log, 0);
        Assert.Equal(log, open.Trailer);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    public void Open_KeyFromStdin_LengthByteAndKeyAfterMessage(int keyBytes)
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);
        byte[] key = Enumerable.Range(0, keyBytes).Select(i => (byte)i).ToArray();

        AssertOk(TapCtlProcess.Run(Root, ["open", "-p", "1333", "-m", "0", "-a", "vhd:/e.vhd", "-E"], key, null));

        RecordedRequest open = fake.RequestsOfType(TapdiskMessageType.Open).Single();
        Assert.Equal(TapdiskOpenFlags.OpenEncrypted, open.Message.ParamsFlags);
        Assert.Equal(-1, open.Message.ParamsParentMinor);
        Assert.Equal([(byte)keyBytes, .. key], open.Trailer);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(33)]
    public void Open_KeyOfWrongSize_Exit1WithoutSending(int keyBytes)
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        ProcessResult r = TapCtlProcess.Run(Root, ["open", "-p", "1333", "-m", "0", "-a", "vhd:/e.vhd", "-E"], new byte[keyBytes], null);

        AssertFails(r, 1, "Unsupported keysize, use either 256 bit or 512 bit key\n");
        Assert.Empty(fake.RequestsOfType(TapdiskMessageType.Open));
    }

    [Fact]
    public void Open_ErrorReplies_PositiveErrnoExitCodes()
    {
        FakeTapdisk fake = StartFake(Pid);
        Allocate();
        fake.OpenFailures["vhd:/srv/missing.vhd"] = 2;
        fake.OpenFailures["vhd:/srv/k.vhd"] = 126;

        AssertFails(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/a.vhd"), 22, "Invalid argument\n");
        AssertOk(TapCtl("attach", "-p", "1333", "-m", "0"));
        AssertFails(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/missing.vhd"), 2, "No such file or directory\n");
        AssertFails(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/k.vhd"), 126, "Required key not available\n");
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/a.vhd"));
        AssertFails(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/srv/a.vhd"), 114, "Operation already in progress\n");
    }

    [Fact]
    public void Open_PathOf255Characters_NameTooLong()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        AssertFails(TapCtl("open", "-p", "1333", "-m", "0", "-a", "aio:/" + new string('x', 250)), 36, "File name too long\n");
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "aio:/" + new string('x', 249)));
    }

    [Fact]
    public void Close_Force_SendsForceShutdown_ListShowsClosed()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "aio:/x"));

        AssertOk(TapCtl("close", "-p", "1333", "-m", "0", "-f", "-t", "5"));

        Assert.Single(fake.RequestsOfType(TapdiskMessageType.ForceShutdown));
        AssertOk(TapCtl("list"), "pid=1333 minor=0 state=0x2\n");
        AssertOk(TapCtl("close", "-p", "1333", "-m", "0"));
        AssertFails(TapCtl("close", "-p", "1333", "-m", "9"), 19, "No such device\n");
    }

    [Fact]
    public void Detach_ErrorReply_OddStdoutLineAndEinval()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        AssertOk(TapCtl("detach", "-p", "1333", "-m", "0"));
        AssertFails(TapCtl("detach", "-p", "1333", "-m", "0"), 22, "Invalid argument\n", "got unexpected result 'error' from 1333\n");
    }

    [Fact]
    public void PauseUnpause_TimeoutAccepted_ResumeCarriesParams()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/a.vhd"));

        AssertFails(TapCtl("unpause", "-p", "1333", "-m", "0"), 22, "Invalid argument\n");
        AssertOk(TapCtl("pause", "-p", "1333", "-m", "0", "-t", "5"));
        AssertOk(TapCtl("list"), "pid=1333 minor=0 state=0x2a args=vhd:/a.vhd\n");
        AssertOk(TapCtl("unpause", "-p", "1333", "-m", "0", "-a", "vhd:/b.vhd", "-2", "aio:/s.img", "-c", "/cbt.log"));
        AssertOk(TapCtl("list"), "pid=1333 minor=0 state=0 args=vhd:/b.vhd\n");

        RecordedRequest resume = fake.RequestsOfType(TapdiskMessageType.Resume)[^1];
        Assert.Equal(TapdiskOpenFlags.Secondary | TapdiskOpenFlags.AddLog, resume.Message.ParamsFlags);
        Assert.Equal("vhd:/b.vhd", resume.Message.ParamsPath);
        Assert.Equal("aio:/s.img", resume.Message.ParamsSecondary);
        Assert.Equal(256, resume.Trailer.Length);
        Assert.Equal("/cbt.log", Encoding.ASCII.GetString(resume.Trailer, 0, 8));
        Assert.True(resume.Trailer.AsSpan(8).IndexOfAnyExcept((byte)0) < 0);

        TapdiskMessage plain = fake.RequestsOfType(TapdiskMessageType.Resume)[0].Message;
        byte[] expected = new byte[TapdiskMessage.Size];
        expected[0] = 11;
        Assert.Equal(expected, plain.Bytes.ToArray());
    }

    [Fact]
    public void Stats_JsonThenBlankLine_UnknownMinorTwoNewlinesExit0()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/a.vhd"));

        AssertOk(TapCtl("stats", "-p", "1333", "-m", "0"), FakeTapdisk.StatsJson(0, "vhd:/a.vhd") + "\n\n");
        AssertOk(TapCtl("stats", "-p", "1333", "-m", "77"), "\n\n");
        Assert.Equal(77, fake.RequestsOfType(TapdiskMessageType.Stats)[^1].Message.Cookie);
    }

    [Fact]
    public void Destroy_ClosesDetachesAndFrees()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);
        AssertOk(TapCtl("open", "-p", "1333", "-m", "0", "-a", "vhd:/a.vhd"));

        AssertOk(TapCtl("destroy", "-p", "1333", "-m", "0"));

        Assert.Equal(
            [TapdiskMessageType.Attach, TapdiskMessageType.Open, TapdiskMessageType.Close, TapdiskMessageType.Detach],
            fake.Requests.Select(r => r.Message.Type).Where(t => t != TapdiskMessageType.Pid && t != TapdiskMessageType.List));
        Assert.False(File.Exists(Marker(0)));
        AssertOk(TapCtl("list"), "pid=1333\n");
    }

    [Fact]
    public void Debug_TracesMessages()
    {
        FakeTapdisk fake = StartFake(Pid);
        AllocateAndAttach(fake);

        AssertOk(TapCtl("close", "--debug", "-p", "1333", "-m", "0"), "sending 'close' message (uuid = 0)\nreceived 'close response' message (uuid = 0)\n");
    }
}
