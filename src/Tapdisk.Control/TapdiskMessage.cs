using System.Buffers.Binary;
using System.Text;

namespace Tapdisk.Control;

/// <summary>
/// The fixed 544-byte <c>tapdisk_message</c> (control-xen.md 2.2, 2.3), little-endian, parsed at named offsets.
/// Union members overlap exactly as in C; each accessor names the member it belongs to.
/// </summary>
public sealed class TapdiskMessage
{
    public const int Size = 544;
    public const int PathLength = 256;
    public const ushort AllMinors = 0xFFFF;

    private const int TypeOffset = 0;
    private const int CookieOffset = 2;
    private const int UnionOffset = 8;

    // params (OPEN, RESUME)
    private const int ParamsFlagsOffset = UnionOffset + 0;
    private const int ParamsDevnumOffset = UnionOffset + 4;
    private const int ParamsDomidOffset = UnionOffset + 8;
    private const int ParamsPathOffset = UnionOffset + 12;
    private const int ParamsParentMinorOffset = UnionOffset + 268;
    private const int ParamsRequestTimeoutOffset = UnionOffset + 272;
    private const int ParamsSecondaryOffset = UnionOffset + 274;

    // image (OPEN_RSP, DISK_INFO_RSP)
    private const int ImageSectorsOffset = UnionOffset + 0;
    private const int ImageSectorSizeOffset = UnionOffset + 8;
    private const int ImageInfoOffset = UnionOffset + 12;

    // response (ERROR) and tapdisk_pid share offset 0 of the union
    private const int ResponseErrorOffset = UnionOffset + 0;
    private const int ResponseMessageOffset = UnionOffset + 4;

    // list (LIST_RSP)
    private const int ListCountOffset = UnionOffset + 0;
    private const int ListMinorOffset = UnionOffset + 4;
    private const int ListStateOffset = UnionOffset + 8;
    private const int ListPathOffset = UnionOffset + 12;

    // info (STATS_RSP)
    private const int InfoLengthOffset = UnionOffset + 8;

    // blkif (XENBLKIF_CONNECT / DISCONNECT)
    private const int BlkifDomidOffset = UnionOffset + 0;
    private const int BlkifDevidOffset = UnionOffset + 4;
    private const int BlkifGrefOffset = UnionOffset + 8;
    private const int BlkifOrderOffset = UnionOffset + 40;
    private const int BlkifProtoOffset = UnionOffset + 44;
    private const int BlkifPoolOffset = UnionOffset + 48;
    private const int BlkifPortOffset = UnionOffset + 304;
    private const int BlkifPollDurationOffset = UnionOffset + 308;
    private const int BlkifPollIdleThresholdOffset = UnionOffset + 312;

    private readonly byte[] _bytes;

    public TapdiskMessage()
    {
        _bytes = new byte[Size];
    }

    public TapdiskMessage(TapdiskMessageType type, ushort cookie)
        : this()
    {
        Type = type;
        Cookie = cookie;
    }

    private TapdiskMessage(byte[] bytes)
    {
        _bytes = bytes;
    }

    public static TapdiskMessage Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < Size)
        {
            throw new ArgumentException($"a tapdisk message is {Size} bytes, got {bytes.Length}", nameof(bytes));
        }

        return new TapdiskMessage(bytes[..Size].ToArray());
    }

    public ReadOnlySpan<byte> Bytes => _bytes;

    public TapdiskMessageType Type
    {
        get => (TapdiskMessageType)BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(TypeOffset));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(TypeOffset), (ushort)value);
    }

    public ushort Cookie
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(CookieOffset));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(CookieOffset), value);
    }

    public TapdiskOpenFlags ParamsFlags
    {
        get => (TapdiskOpenFlags)U32(ParamsFlagsOffset);
        set => SetU32(ParamsFlagsOffset, (uint)value);
    }

    public uint ParamsDevnum
    {
        get => U32(ParamsDevnumOffset);
        set => SetU32(ParamsDevnumOffset, value);
    }

    public uint ParamsDomid
    {
        get => U32(ParamsDomidOffset);
        set => SetU32(ParamsDomidOffset, value);
    }

    /// <summary><c>params.path</c>: "type:/path"; null if the 256-byte slot has no NUL (the daemon answers EINVAL).</summary>
    public string? ParamsPath
    {
        get => CString(ParamsPathOffset, PathLength);
        set => SetCString(ParamsPathOffset, PathLength, value);
    }

    public int ParamsParentMinor
    {
        get => (int)U32(ParamsParentMinorOffset);
        set => SetU32(ParamsParentMinorOffset, (uint)value);
    }

    public ushort ParamsRequestTimeout
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(ParamsRequestTimeoutOffset));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(ParamsRequestTimeoutOffset), value);
    }

    public string? ParamsSecondary
    {
        get => CString(ParamsSecondaryOffset, PathLength);
        set => SetCString(ParamsSecondaryOffset, PathLength, value);
    }

    /// <summary>True if the params.path slot holds a NUL: the daemon's validation of every request (control-xen.md 2.4).</summary>
    public bool HasTerminatedPathSlot => _bytes.AsSpan(ParamsPathOffset, PathLength).Contains((byte)0);

    public ulong ImageSectors
    {
        get => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(ImageSectorsOffset));
        set => BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan(ImageSectorsOffset), value);
    }

    public uint ImageSectorSize
    {
        get => U32(ImageSectorSizeOffset);
        set => SetU32(ImageSectorSizeOffset, value);
    }

    public uint ImageInfo
    {
        get => U32(ImageInfoOffset);
        set => SetU32(ImageInfoOffset, value);
    }

    /// <summary><c>response.error</c>: a positive errno on ERROR.</summary>
    public int ResponseError
    {
        get => (int)U32(ResponseErrorOffset);
        set => SetU32(ResponseErrorOffset, (uint)value);
    }

    public string? ResponseMessage
    {
        get => CString(ResponseMessageOffset, PathLength);
        set => SetCString(ResponseMessageOffset, PathLength, value);
    }

    /// <summary><c>tapdisk_pid</c> of PID_RSP (the same slot as response.error).</summary>
    public int Pid
    {
        get => (int)U32(ResponseErrorOffset);
        set => SetU32(ResponseErrorOffset, (uint)value);
    }

    public int ListCount
    {
        get => (int)U32(ListCountOffset);
        set => SetU32(ListCountOffset, (uint)value);
    }

    public int ListMinor
    {
        get => (int)U32(ListMinorOffset);
        set => SetU32(ListMinorOffset, (uint)value);
    }

    public int ListState
    {
        get => (int)U32(ListStateOffset);
        set => SetU32(ListStateOffset, (uint)value);
    }

    public string? ListPath
    {
        get => CString(ListPathOffset, PathLength);
        set => SetCString(ListPathOffset, PathLength, value);
    }

    /// <summary><c>info.length</c> of STATS_RSP: the JSON bytes that follow.</summary>
    public ulong InfoLength
    {
        get => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(InfoLengthOffset));
        set => BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan(InfoLengthOffset), value);
    }

    public uint BlkifDomid
    {
        get => U32(BlkifDomidOffset);
        set => SetU32(BlkifDomidOffset, value);
    }

    public uint BlkifDevid
    {
        get => U32(BlkifDevidOffset);
        set => SetU32(BlkifDevidOffset, value);
    }

    public uint GetBlkifGref(int index) => U32(BlkifGrefOffset + (4 * CheckGref(index)));

    public void SetBlkifGref(int index, uint value) => SetU32(BlkifGrefOffset + (4 * CheckGref(index)), value);

    public uint BlkifOrder
    {
        get => U32(BlkifOrderOffset);
        set => SetU32(BlkifOrderOffset, value);
    }

    public uint BlkifProto
    {
        get => U32(BlkifProtoOffset);
        set => SetU32(BlkifProtoOffset, value);
    }

    public string? BlkifPool
    {
        get => CString(BlkifPoolOffset, PathLength);
        set => SetCString(BlkifPoolOffset, PathLength, value);
    }

    public uint BlkifPort
    {
        get => U32(BlkifPortOffset);
        set => SetU32(BlkifPortOffset, value);
    }

    public uint BlkifPollDuration
    {
        get => U32(BlkifPollDurationOffset);
        set => SetU32(BlkifPollDurationOffset, value);
    }

    public uint BlkifPollIdleThreshold
    {
        get => U32(BlkifPollIdleThresholdOffset);
        set => SetU32(BlkifPollIdleThresholdOffset, value);
    }

    /// <summary>An ERROR reply: positive errno, message empty, the rest zero (control-xen.md 3.2).</summary>
    public static TapdiskMessage ErrorReply(ushort cookie, int errno) => new(TapdiskMessageType.Error, cookie) { ResponseError = errno };

    public static string Name(TapdiskMessageType type) => type switch
    {
        TapdiskMessageType.Error => "error",
        TapdiskMessageType.Pid => "pid",
        TapdiskMessageType.PidResponse => "pid response",
        TapdiskMessageType.Attach => "attach",
        TapdiskMessageType.AttachResponse => "attach response",
        TapdiskMessageType.Open => "open",
        TapdiskMessageType.OpenResponse => "open response",
        TapdiskMessageType.Pause => "pause",
        TapdiskMessageType.PauseResponse => "pause response",
        TapdiskMessageType.Resume => "resume",
        TapdiskMessageType.ResumeResponse => "resume response",
        TapdiskMessageType.Close => "close",
        TapdiskMessageType.CloseResponse => "close response",
        TapdiskMessageType.Detach => "detach",
        TapdiskMessageType.DetachResponse => "detach response",
        TapdiskMessageType.List => "list",
        TapdiskMessageType.ListResponse => "list response",
        TapdiskMessageType.Stats => "stats",
        TapdiskMessageType.StatsResponse => "stats response",
        TapdiskMessageType.ForceShutdown => "force shutdown",
        TapdiskMessageType.XenblkifConnect => "sring connect",
        TapdiskMessageType.XenblkifConnectResponse => "sring connect rsp",
        TapdiskMessageType.XenblkifDisconnect => "sring disconnect",
        TapdiskMessageType.XenblkifDisconnectResponse => "sring disconnect rsp",
        TapdiskMessageType.DiskInfo => "disk info",
        TapdiskMessageType.DiskInfoResponse => "disk info rsp",
        _ => "unknown",
    };

    private static int CheckGref(int index) => (uint)index < 8 ? index : throw new ArgumentOutOfRangeException(nameof(index));

    private uint U32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_bytes.AsSpan(offset));

    private void SetU32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_bytes.AsSpan(offset), value);

    private string? CString(int offset, int length)
    {
        ReadOnlySpan<byte> slot = _bytes.AsSpan(offset, length);
        int nul = slot.IndexOf((byte)0);
        return nul < 0 ? null : Encoding.UTF8.GetString(slot[..nul]);
    }

    private void SetCString(int offset, int length, string? value)
    {
        Span<byte> slot = _bytes.AsSpan(offset, length);
        slot.Clear();
        if (value is null)
        {
            return;
        }

        int n = Encoding.UTF8.GetByteCount(value);
        if (n >= length)
        {
            throw new ArgumentException($"string of {n} bytes does not fit a {length}-byte C field with its NUL", nameof(value));
        }

        Encoding.UTF8.GetBytes(value, slot);
    }
}
