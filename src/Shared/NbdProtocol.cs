namespace Tapdisk;

/// <summary>
/// NBD wire constants (shared/spec/data-plane.md Appendix A); names keep the protocol's spelling. One source file
/// compiled into both ends, the server (Tapdisk.Nbd) and the client driver (Tapdisk.Drivers.Nbd), which may not
/// reference each other (STYLE.md section 2).
/// </summary>
internal static class NbdProtocol
{
    // Magics.
    public const ulong NBDMAGIC = 0x4E42444D41474943;
    public const ulong IHAVEOPT = 0x49484156454F5054;

    /// <summary>The oldstyle greeting's second magic ("cliserv_magic").</summary>
    public const ulong OldstyleMagic = 0x00420281861253;
    public const ulong NBD_REP_MAGIC = 0x0003E889045565A9;
    public const uint NBD_REQUEST_MAGIC = 0x25609513;
    public const uint NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
    public const uint NBD_STRUCTURED_REPLY_MAGIC = 0x668E33EF;
    public const uint NBD_EXTENDED_REQUEST_MAGIC = 0x21E41C71;
    public const uint NBD_EXTENDED_REPLY_MAGIC = 0x6E8A278C;

    /// <summary>The oldstyle greeting after the two magics: size u64, flags u32, 124 zero bytes.</summary>
    public const int OldstyleGreetingTailSize = 8 + 4 + 124;

    /// <summary>Zero padding after the EXPORT_NAME reply unless both sides set NO_ZEROES.</summary>
    public const int ExportNameZeroPadSize = 124;

    // Handshake flags.
    public const ushort NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
    public const ushort NBD_FLAG_NO_ZEROES = 1 << 1;
    public const uint NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
    public const uint NBD_FLAG_C_NO_ZEROES = 1 << 1;

    // Transmission flags.
    public const ushort NBD_FLAG_HAS_FLAGS = 1 << 0;
    public const ushort NBD_FLAG_READ_ONLY = 1 << 1;
    public const ushort NBD_FLAG_SEND_FLUSH = 1 << 2;
    public const ushort NBD_FLAG_SEND_FUA = 1 << 3;
    public const ushort NBD_FLAG_SEND_TRIM = 1 << 5;
    public const ushort NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public const ushort NBD_FLAG_SEND_DF = 1 << 7;
    public const ushort NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
    public const ushort NBD_FLAG_SEND_CACHE = 1 << 10;
    public const ushort NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

    // Options.
    public const uint NBD_OPT_EXPORT_NAME = 1;
    public const uint NBD_OPT_ABORT = 2;
    public const uint NBD_OPT_LIST = 3;
    public const uint NBD_OPT_STARTTLS = 5;
    public const uint NBD_OPT_INFO = 6;
    public const uint NBD_OPT_GO = 7;
    public const uint NBD_OPT_STRUCTURED_REPLY = 8;
    public const uint NBD_OPT_LIST_META_CONTEXT = 9;
    public const uint NBD_OPT_SET_META_CONTEXT = 10;
    public const uint NBD_OPT_EXTENDED_HEADERS = 11;

    // Option reply types.
    public const uint NBD_REP_ACK = 1;
    public const uint NBD_REP_SERVER = 2;
    public const uint NBD_REP_INFO = 3;
    public const uint NBD_REP_META_CONTEXT = 4;
    public const uint NBD_REP_FLAG_ERROR = 1u << 31;
    public const uint NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1;
    public const uint NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2;
    public const uint NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3;
    public const uint NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6;
    public const uint NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9;

    // NBD_REP_INFO types.
    public const ushort NBD_INFO_EXPORT = 0;
    public const ushort NBD_INFO_NAME = 1;
    public const ushort NBD_INFO_DESCRIPTION = 2;
    public const ushort NBD_INFO_BLOCK_SIZE = 3;

    // Commands.
    public const ushort NBD_CMD_READ = 0;
    public const ushort NBD_CMD_WRITE = 1;
    public const ushort NBD_CMD_DISC = 2;
    public const ushort NBD_CMD_FLUSH = 3;
    public const ushort NBD_CMD_TRIM = 4;
    public const ushort NBD_CMD_CACHE = 5;
    public const ushort NBD_CMD_WRITE_ZEROES = 6;
    public const ushort NBD_CMD_BLOCK_STATUS = 7;

    // Command flags.
    public const ushort NBD_CMD_FLAG_FUA = 1 << 0;
    public const ushort NBD_CMD_FLAG_NO_HOLE = 1 << 1;
    public const ushort NBD_CMD_FLAG_DF = 1 << 2;
    public const ushort NBD_CMD_FLAG_REQ_ONE = 1 << 3;
    public const ushort NBD_CMD_FLAG_FAST_ZERO = 1 << 4;
    public const ushort NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5;

    // Structured reply chunks.
    public const ushort NBD_REPLY_FLAG_DONE = 1 << 0;
    public const ushort NBD_REPLY_TYPE_NONE = 0;
    public const ushort NBD_REPLY_TYPE_OFFSET_DATA = 1;
    public const ushort NBD_REPLY_TYPE_OFFSET_HOLE = 2;
    public const ushort NBD_REPLY_TYPE_BLOCK_STATUS = 5;
    public const ushort NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6;
    public const ushort NBD_REPLY_TYPE_ERROR = 0x8001;

    // Error codes on the wire.
    public const uint NBD_EPERM = 1;
    public const uint NBD_EIO = 5;
    public const uint NBD_ENOMEM = 12;
    public const uint NBD_EINVAL = 22;
    public const uint NBD_ENOSPC = 28;
    public const uint NBD_EOVERFLOW = 75;
    public const uint NBD_ENOTSUP = 95;
    public const uint NBD_ESHUTDOWN = 108;

    /// <summary>The allocation meta context every export serves.</summary>
    public const string BaseAllocation = "base:allocation";

    public const uint BaseAllocationContextId = 1;

    /// <summary>qemu's dirty-bitmap namespace: bit 0 of an extent's flags set = dirty. Served when the stack tracks changes.</summary>
    public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";

    public const uint DirtyBitmapContextId = 2;

    public const uint DirtyBitmapDirty = 1;

    /// <summary>qemu's allocation depth: per extent, 0 = unallocated down the chain, 1 = the leaf, 2 = its parent, ...</summary>
    public const string AllocationDepth = "qemu:allocation-depth";

    public const uint AllocationDepthContextId = 3;

    /// <summary>Compact request header size in bytes.</summary>
    public const int RequestSize = 28;

    /// <summary>Extended request header size in bytes (64-bit length).</summary>
    public const int ExtendedRequestSize = 32;

    /// <summary>Option request header size in bytes (magic, option, length).</summary>
    public const int OptionHeaderSize = 16;

    public const int SimpleReplySize = 16;
    public const int StructuredReplySize = 20;

    /// <summary>Extended reply chunk header: magic, flags, type, cookie, the request's offset, u64 payload length.</summary>
    public const int ExtendedReplySize = 32;
}
