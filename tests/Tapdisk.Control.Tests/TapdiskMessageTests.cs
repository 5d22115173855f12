using System.Buffers.Binary;
using System.Text;
using Xunit;

namespace Tapdisk.Control.Tests;

/// <summary>Every field at the message offset of control-xen.md 2.2/2.3 (union offset + 8), checked byte by byte.</summary>
public sealed class TapdiskMessageTests
{
    [Fact]
    public void Header_TypeAndCookie_AtOffsets0And2()
    {
        var m = new TapdiskMessage(TapdiskMessageType.List, 0xFFFF);

        AssertBytes(m, (0, [0x13, 0x00]), (2, [0xFF, 0xFF]));
        Assert.Equal(TapdiskMessage.Size, m.Bytes.Length);
        Assert.Equal(544, TapdiskMessage.Size);
    }

    [Fact]
    public void Params_Fields_AtMessageOffsets()
    {
        var m = new TapdiskMessage(TapdiskMessageType.Open, 3)
        {
            ParamsFlags = TapdiskOpenFlags.ReadOnly | TapdiskOpenFlags.NoODirect,
            ParamsDevnum = 0x01020304,
            ParamsDomid = 0x0A0B0C0D,
            ParamsPath = "aio:/x",
            ParamsParentMinor = -1,
            ParamsRequestTimeout = 0x1234,
            ParamsSecondary = "vhd:/y",
        };

        AssertBytes(
            m,
            (0, [7, 0]),
            (2, [3, 0]),
            (8, [0x02, 0x02, 0, 0]),
            (12, [0x04, 0x03, 0x02, 0x01]),
            (16, [0x0D, 0x0C, 0x0B, 0x0A]),
            (20, Encoding.ASCII.GetBytes("aio:/x")),
            (276, [0xFF, 0xFF, 0xFF, 0xFF]),
            (280, [0x34, 0x12]),
            (282, Encoding.ASCII.GetBytes("vhd:/y")));
    }

    [Fact]
    public void Image_Fields_AtMessageOffsets()
    {
        var m = new TapdiskMessage(TapdiskMessageType.OpenResponse, 0) { ImageSectors = 0x8000, ImageSectorSize = 512, ImageInfo = 4 };

        // The same bytes as the reference's OPEN_RSP capture (reference-transcript.md 8, "open").
        AssertBytes(m, (0, [8, 0]), (8, [0x00, 0x80, 0, 0, 0, 0, 0, 0]), (16, [0x00, 0x02, 0, 0]), (20, [4, 0, 0, 0]));
    }

    [Fact]
    public void Response_ErrorAndMessage_AtOffsets8And12()
    {
        var m = TapdiskMessage.ErrorReply(9, 22);
        m.ResponseMessage = "m";

        AssertBytes(m, (0, [1, 0]), (2, [9, 0]), (8, [0x16, 0, 0, 0]), (12, [(byte)'m']));
    }

    [Fact]
    public void Pid_SharesUnionOffset0()
    {
        var m = new TapdiskMessage(TapdiskMessageType.PidResponse, 0) { Pid = 1333 };

        AssertBytes(m, (0, [4, 0]), (8, [0x35, 0x05, 0, 0]));
        Assert.Equal(1333, m.ResponseError);
    }

    [Fact]
    public void List_Fields_AtMessageOffsets()
    {
        var m = new TapdiskMessage(TapdiskMessageType.ListResponse, 0xFFFF) { ListCount = 2, ListMinor = 7, ListState = 0x2A, ListPath = "vhd:/a" };

        AssertBytes(m, (0, [20, 0]), (2, [0xFF, 0xFF]), (8, [2, 0, 0, 0]), (12, [7, 0, 0, 0]), (16, [0x2A, 0, 0, 0]), (20, Encoding.ASCII.GetBytes("vhd:/a")));
    }

    [Fact]
    public void Info_Length_AtOffset16()
    {
        var m = new TapdiskMessage(TapdiskMessageType.StatsResponse, 0) { InfoLength = 300 };

        AssertBytes(m, (0, [22, 0]), (16, [0x2C, 0x01, 0, 0, 0, 0, 0, 0]));
    }

    [Fact]
    public void Blkif_Fields_AtMessageOffsets()
    {
        var m = new TapdiskMessage(TapdiskMessageType.XenblkifConnect, 1)
        {
            BlkifDomid = 5,
            BlkifDevid = 51712,
            BlkifOrder = 2,
            BlkifProto = 3,
            BlkifPool = "pool",
            BlkifPort = 0x11,
            BlkifPollDuration = 0x22,
            BlkifPollIdleThreshold = 0x33,
        };
        for (int i = 0; i < 8; i++)
        {
            m.SetBlkifGref(i, (uint)(0x100 + i));
        }

        var expected = new List<(int, byte[])>
        {
            (0, [24, 0]),
            (2, [1, 0]),
            (8, [5, 0, 0, 0]),
            (12, [0x00, 0xCA, 0, 0]),
            (48, [2, 0, 0, 0]),
            (52, [3, 0, 0, 0]),
            (56, Encoding.ASCII.GetBytes("pool")),
            (312, [0x11, 0, 0, 0]),
            (316, [0x22, 0, 0, 0]),
            (320, [0x33, 0, 0, 0]),
        };
        for (int i = 0; i < 8; i++)
        {
            expected.Add((16 + (4 * i), [(byte)i, 0x01, 0, 0]));
            Assert.Equal((uint)(0x100 + i), m.GetBlkifGref(i));
        }

        AssertBytes(m, [.. expected]);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.GetBlkifGref(8));
    }

    [Fact]
    public void Parse_RoundTripsEveryByte()
    {
        byte[] bytes = new byte[TapdiskMessage.Size];
        new Random(1234).NextBytes(bytes);

        TapdiskMessage parsed = TapdiskMessage.Parse(bytes);

        Assert.Equal(bytes, parsed.Bytes.ToArray());
        Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(bytes), (ushort)parsed.Type);
        Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2)), parsed.Cookie);
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(16)), parsed.InfoLength);
        Assert.Equal(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(276)), parsed.ParamsParentMinor);
    }

    [Fact]
    public void Params_RoundTripThroughParse()
    {
        var m = new TapdiskMessage(TapdiskMessageType.Resume, 12) { ParamsFlags = TapdiskOpenFlags.Secondary | TapdiskOpenFlags.AddLog, ParamsPath = "vhd:/p", ParamsSecondary = "aio:/s", ParamsRequestTimeout = 7 };

        TapdiskMessage back = TapdiskMessage.Parse(m.Bytes);

        Assert.Equal(TapdiskMessageType.Resume, back.Type);
        Assert.Equal(12, back.Cookie);
        Assert.Equal(m.ParamsFlags, back.ParamsFlags);
        Assert.Equal("vhd:/p", back.ParamsPath);
        Assert.Equal("aio:/s", back.ParamsSecondary);
        Assert.Equal(7, back.ParamsRequestTimeout);
    }

    [Fact]
    public void Parse_ShortBuffer_Throws() => Assert.Throws<ArgumentException>(() => TapdiskMessage.Parse(new byte[543]));

    [Fact]
    public void Path_255Bytes_FitsWithNul_256Throws()
    {
        var m = new TapdiskMessage(TapdiskMessageType.Open, 0) { ParamsPath = new string('a', 255) };

        Assert.Equal(255, m.ParamsPath!.Length);
        Assert.Equal(0, m.Bytes[20 + 255]);
        Assert.Throws<ArgumentException>(() => m.ParamsPath = new string('a', 256));
    }

    [Fact]
    public void PathSlot_WithoutNul_IsReported()
    {
        byte[] bytes = new byte[TapdiskMessage.Size];
        bytes.AsSpan(20, 256).Fill((byte)'A');

        TapdiskMessage m = TapdiskMessage.Parse(bytes);

        Assert.False(m.HasTerminatedPathSlot);
        Assert.Null(m.ParamsPath);
        Assert.True(new TapdiskMessage(TapdiskMessageType.Pid, 0).HasTerminatedPathSlot);
    }

    /// <summary>The listed byte runs are where they should be, and every other byte of the 544 is zero.</summary>
    private static void AssertBytes(TapdiskMessage m, params (int Offset, byte[] Bytes)[] runs)
    {
        byte[] expected = new byte[TapdiskMessage.Size];
        foreach ((int offset, byte[] run) in runs)
        {
            run.CopyTo(expected, offset);
        }

        ReadOnlySpan<byte> actual = m.Bytes;
        for (int i = 0; i < TapdiskMessage.Size; i++)
        {
            Assert.True(expected[i] == actual[i], $"byte {i}: expected 0x{expected[i]:x2}, got 0x{actual[i]:x2}");
        }
    }
}
