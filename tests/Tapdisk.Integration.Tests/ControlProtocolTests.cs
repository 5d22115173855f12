using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>Raw, hand-built control messages against a live tapdisk (control-xen.md 2.4, 2.6, 3.4).</summary>
public sealed class ControlProtocolTests : IntegrationTest
{
    private const int EPERM = 1, ENOENT = 2, EEXIST = 17, EBUSY = 16, ENODEV = 19, EINVAL = 22;

    private int _pid;

    private string Ctl => ControlSocket(_pid);

    private void StartDaemon() => _pid = Spawn();

    /// <summary>A marker file made by hand (what tap-ctl allocate would leave), so ATTACH can lock it.</summary>
    private void MakeMarker(int minor)
    {
        Directory.CreateDirectory(Path.Combine(Root, "tapdisk"));
        File.WriteAllBytes(Marker(minor), []);
    }

    private static void AssertError(byte[] reply, ushort cookie, int errno)
    {
        Assert.Equal(RawControl.Error, RawControl.Type(reply));
        Assert.Equal(cookie, RawControl.Cookie(reply));
        Assert.Equal(errno, RawControl.Int0(reply));
    }

    private void AssertAlive()
    {
        byte[] reply = RawControl.Exchange(Ctl, RawControl.Message(RawControl.Pid, 0));
        Assert.Equal(RawControl.PidRsp, RawControl.Type(reply));
        Assert.Equal(_pid, RawControl.Int0(reply));
    }

    private void Ok(byte[] request, ushort expectedType)
    {
        byte[] reply = RawControl.Exchange(Ctl, request);
        Assert.True(RawControl.Type(reply) == expectedType, $"expected reply type {expectedType}, got {RawControl.Type(reply)} errno {RawControl.Int0(reply)}");
        Assert.Equal(RawControl.Cookie(request), RawControl.Cookie(reply));
        Assert.Equal(0, RawControl.Int0(reply));
    }

    [Fact]
    public void Pid_AnswersWithItsPid()
    {
        StartDaemon();
        AssertAlive();
    }

    [Fact]
    public void PathSlotWithoutNul_EinvalCookieZero()
    {
        StartDaemon();
        byte[] m = RawControl.Message(RawControl.Pid, 7);
        m.AsSpan(20, 256).Fill((byte)'A');
        AssertError(RawControl.Exchange(Ctl, m), 0, EINVAL);
        AssertAlive();
    }

    [Theory]
    [InlineData(0x1234)]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(17)]
    [InlineData(30)]
    public void UnknownType_EinvalCookieZero(int type)
    {
        StartDaemon();
        AssertError(RawControl.Exchange(Ctl, RawControl.Message((ushort)type, 5)), 0, EINVAL);
        AssertAlive();
    }

    [Fact]
    public void ShortMessageThenClose_NoReply_DaemonStillServes()
    {
        StartDaemon();
        using (Socket s = RawControl.Connect(Ctl))
        {
            s.Send(RawControl.Message(RawControl.Pid, 0).AsSpan(0, 100));
            s.Shutdown(SocketShutdown.Send);
            Assert.Null(RawControl.ReadMessage(s));
        }

        AssertAlive();
    }

    [Fact]
    public void RequestSplitAcrossWrites_Served()
    {
        StartDaemon();
        using Socket s = RawControl.Connect(Ctl);
        byte[] m = RawControl.Message(RawControl.Pid, 0);
        s.Send(m.AsSpan(0, 8));
        Thread.Sleep(100); // not a timing assertion: only makes a separate read() likely
        s.Send(m.AsSpan(8));
        byte[] reply = RawControl.ReadMessage(s) ?? throw new IOException("no reply");
        Assert.Equal(RawControl.PidRsp, RawControl.Type(reply));
        Assert.Equal(_pid, RawControl.Int0(reply));
    }

    [Fact]
    public void Open_UnattachedMinor_Einval()
    {
        StartDaemon();
        AssertError(RawControl.Exchange(Ctl, RawControl.OpenMessage(9, "aio:" + Scratch.File("x"))), 9, EINVAL);
    }

    [Fact]
    public void Close_UnknownMinor_Enodev()
    {
        StartDaemon();
        AssertError(RawControl.Exchange(Ctl, RawControl.Message(RawControl.Close, 11)), 11, ENODEV);
    }

    [Fact]
    public void Attach_WithoutMarker_Eperm()
    {
        StartDaemon();
        AssertError(RawControl.Exchange(Ctl, RawControl.Message(RawControl.Attach, 12)), 12, EPERM);
        AssertAlive();
    }

    [Fact]
    public void AttachTwice_Eexist_DetachOpen_Ebusy_OpenMissing_Enoent_ThenOpens()
    {
        StartDaemon();
        MakeMarker(3);
        Ok(RawControl.Message(RawControl.Attach, 3), RawControl.AttachRsp);
        AssertError(RawControl.Exchange(Ctl, RawControl.Message(RawControl.Attach, 3)), 3, EEXIST);

        // A failed open leaves the VBD attached and openable.
        AssertError(RawControl.Exchange(Ctl, RawControl.OpenMessage(3, "aio:/nonexistent")), 3, ENOENT);
        string file = CreateVhd("d.vhd", 8);
        byte[] open = RawControl.Exchange(Ctl, RawControl.OpenMessage(3, "vhd:" + file));
        Assert.True(RawControl.Type(open) == RawControl.OpenRsp, $"open failed: type {RawControl.Type(open)} errno {RawControl.Int0(open)}");
        Assert.Equal(3, RawControl.Cookie(open));
        Assert.Equal(8UL * 1024 * 1024 / 512, RawControl.ImageSectors(open));
        Assert.Equal(512U, RawControl.ImageSectorSize(open));
        Assert.Equal(8L * 1024 * 1024, NbdExportSize(NbdSocket(_pid, 3)));

        AssertError(RawControl.Exchange(Ctl, RawControl.Message(RawControl.Detach, 3)), 3, EBUSY);

        Ok(RawControl.Message(RawControl.Close, 3), RawControl.CloseRsp);
        Ok(RawControl.Message(RawControl.Detach, 3), RawControl.DetachRsp);
        WaitForExit(_pid);
    }

    [Fact]
    public void List_CountsDownThenTerminator()
    {
        StartDaemon();
        string file = CreateVhd("l.vhd", 8);
        foreach (ushort minor in new ushort[] { 4, 6, 5 })
        {
            MakeMarker(minor);
            Ok(RawControl.Message(RawControl.Attach, minor), RawControl.AttachRsp);
        }

        Assert.Equal(RawControl.OpenRsp, RawControl.Type(RawControl.Exchange(Ctl, RawControl.OpenMessage(6, "vhd:" + file))));

        List<byte[]> replies = RawControl.ExchangeList(Ctl);
        Assert.Equal(4, replies.Count);
        Assert.All(replies, r => Assert.Equal(RawControl.ListRsp, RawControl.Type(r)));
        Assert.All(replies, r => Assert.Equal(0xFFFF, RawControl.Cookie(r)));
        Assert.Equal([3, 2, 1, 0], replies.Select(r => RawControl.Int0(r)));

        // The daemon sends attach order; tap-ctl is the one that reverses it.
        Assert.Equal([4, 6, 5, -1], replies.Select(r => RawControl.ListMinor(r)));
        Assert.Equal(["", "vhd:" + file, "", ""], replies.Select(r => RawControl.ListPath(r)));
        Assert.Equal(0, RawControl.ListState(replies[1]));

        Ok(RawControl.Message(RawControl.Close, 6), RawControl.CloseRsp);
        replies = RawControl.ExchangeList(Ctl);
        Assert.Equal(0x2, RawControl.ListState(replies[1]));
        foreach (ushort minor in new ushort[] { 4, 6, 5 })
        {
            Ok(RawControl.Message(RawControl.Detach, minor), RawControl.DetachRsp);
        }

        WaitForExit(_pid);
        Assert.False(File.Exists(Ctl), "control socket left behind");
    }

    /// <summary>STATS: one 544-byte header (type 22, u64 JSON length at union offset 8), then exactly that much JSON.</summary>
    private string Stats(ushort cookie)
    {
        using Socket s = RawControl.Connect(Ctl);
        s.Send(RawControl.Message(21, cookie));
        byte[] header = RawControl.ReadMessage(s) ?? throw new IOException("no STATS reply");
        Assert.Equal(22, RawControl.Type(header));
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(16));
        byte[] json = new byte[length];
        int got = 0;
        while (got < json.Length)
        {
            int n = s.Receive(json, got, json.Length - got, SocketFlags.None);
            Assert.True(n > 0, $"EOF after {got} of {length} JSON bytes");
            got += n;
        }

        Assert.Null(RawControl.ReadMessage(s)); // nothing after the JSON: the daemon closes
        return Encoding.UTF8.GetString(json);
    }

    [Fact]
    public void Stats_OneMinorAndAll_HeaderThenExactJson()
    {
        StartDaemon();
        string file = CreateVhd("s.vhd", 8);
        foreach (ushort minor in new ushort[] { 1, 2 })
        {
            MakeMarker(minor);
            Ok(RawControl.Message(RawControl.Attach, minor), RawControl.AttachRsp);
        }

        Assert.Equal(RawControl.OpenRsp, RawControl.Type(RawControl.Exchange(Ctl, RawControl.OpenMessage(2, "vhd:" + file))));
        using (JsonDocument one = JsonDocument.Parse(Stats(2)))
        {
            Assert.Equal("vhd:" + file, one.RootElement.GetProperty("name").GetString());
            Assert.Equal("vhd", one.RootElement.GetProperty("images")[0].GetProperty("driver").GetProperty("name").GetString());
        }

        using (JsonDocument all = JsonDocument.Parse(Stats(0xFFFF)))
        {
            Assert.Equal(JsonValueKind.Array, all.RootElement.ValueKind);
            Assert.Equal(2, all.RootElement.GetArrayLength());
        }

        AssertError(RawControl.Exchange(Ctl, RawControl.Message(21, 9)), 9, ENODEV);
    }

    [Fact]
    public void PauseDiskInfoResume_Raw()
    {
        StartDaemon();
        string file = CreateVhd("p.vhd", 8);
        MakeMarker(1);
        Ok(RawControl.Message(RawControl.Attach, 1), RawControl.AttachRsp);
        AssertError(RawControl.Exchange(Ctl, RawControl.Message(9, 7)), 7, ENODEV);
        Assert.Equal(RawControl.OpenRsp, RawControl.Type(RawControl.Exchange(Ctl, RawControl.OpenMessage(1, "vhd:" + file))));

        // RESUME of a running VBD: EINVAL.
        byte[] resume = RawControl.OpenMessage(1, string.Empty);
        resume[0] = 11;
        AssertError(RawControl.Exchange(Ctl, resume), 1, EINVAL);

        Ok(RawControl.Message(9, 1), 10);
        Assert.Equal(0x2a, RawControl.ListState(RawControl.ExchangeList(Ctl)[0]));

        // DISK_INFO is answered from the cache while paused.
        byte[] info = RawControl.Exchange(Ctl, RawControl.Message(28, 1));
        Assert.Equal(29, RawControl.Type(info));
        Assert.Equal(8UL * 1024 * 1024 / 512, RawControl.ImageSectors(info));
        Assert.Equal(512U, RawControl.ImageSectorSize(info));

        // An empty path resumes the same image.
        Ok(resume, 12);
        List<byte[]> list = RawControl.ExchangeList(Ctl);
        Assert.Equal(0, RawControl.ListState(list[0]));
        Assert.Equal("vhd:" + file, RawControl.ListPath(list[0]));
        Assert.Equal(8L * 1024 * 1024, NbdExportSize(NbdSocket(_pid, 1)));
    }

    [Fact]
    public void List_NoVbd_TerminatorOnly()
    {
        StartDaemon();
        byte[] terminator = Assert.Single(RawControl.ExchangeList(Ctl));
        Assert.Equal(RawControl.ListRsp, RawControl.Type(terminator));
        Assert.Equal(0, RawControl.Int0(terminator));
        Assert.Equal(-1, RawControl.ListMinor(terminator));
        Assert.Equal(string.Empty, RawControl.ListPath(terminator));
    }

    /// <summary>
    /// The DETACH that empties the process is answered only after ctl&lt;pid&gt; is unlinked and no longer accepts
    /// (control-xen.md 4.4), so a client holding that reply can never reach the exiting tapdisk. Checked in process
    /// right after the reply, with no tap-ctl start-up in between to hide the window.
    /// </summary>
    [Fact]
    public void DetachLastVbd_ControlSocketGoneBeforeReply()
    {
        StartDaemon();
        MakeMarker(2);
        Ok(RawControl.Message(RawControl.Attach, 2), RawControl.AttachRsp);

        Ok(RawControl.Message(RawControl.Detach, 2), RawControl.DetachRsp);
        Assert.False(File.Exists(Ctl), "ctl<pid> still exists after the last DETACH was answered");
        SocketException refused = Assert.Throws<SocketException>(() => RawControl.Connect(Ctl).Dispose());
        Assert.Equal(SocketError.AddressNotAvailable, refused.SocketErrorCode);
        WaitForExit(_pid);
    }
}
