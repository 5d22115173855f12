using System.Buffers.Binary;
using System.Text;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Nbd;

/// <summary>Fixed newstyle negotiation (shared/spec/data-plane.md 6.2, 6.3; Appendix A).</summary>
internal sealed partial class NbdConnection
{
    private const int MaxNameBytes = 4096;

    private enum OptionOutcome
    {
        Continue,
        Transmit,
        Close,
    }

    /// <summary>Negotiates; returns the export to serve, or null when the connection should close.</summary>
    private async ValueTask<NbdExport?> HandshakeAsync(CancellationToken cancellationToken)
    {
        if (_oldstyle)
        {
            NbdExport export = _server.Resolve(string.Empty)!;
            WriteOldstyleGreeting(export.Image);
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            return export;
        }

        WriteGreeting();
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);

        byte[] header = new byte[OptionHeaderSize];
        if (!await ReadExactAsync(header.AsMemory(0, 4), cancellationToken).ConfigureAwait(false))
        {
            return EndHandshake("client closed before sending its flags");
        }

        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(header);
        if ((clientFlags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) != 0)
        {
            // proto.md: a server must drop a client that sets flags it does not know.
            return EndHandshake($"unknown client flags 0x{clientFlags:x8}");
        }

        _clientNoZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) != 0;

        for (int count = 0; count < _options.MaxOptions; count++)
        {
            if (!await ReadExactAsync(header, cancellationToken).ConfigureAwait(false))
            {
                return EndHandshake("client closed during option haggling");
            }

            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (magic != IHAVEOPT)
            {
                Log.ProtocolViolation(_logger, _id, $"bad option magic 0x{magic:x16}");
                return null;
            }

            if (length > _options.MaxOptionBytes)
            {
                if (option == NBD_OPT_EXPORT_NAME || length > _options.MaxSkippableOptionBytes)
                {
                    // EXPORT_NAME has no error reply, and a payload this big is not worth reading: answer and drop.
                    WriteOptionError(option, NBD_REP_ERR_TOO_BIG, "option payload too large");
                    await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    return EndHandshake($"option {option} with a {length}-byte payload");
                }

                if (!await SkipAsync(length, cancellationToken).ConfigureAwait(false))
                {
                    return EndHandshake("client closed inside an option payload");
                }

                WriteOptionError(option, NBD_REP_ERR_TOO_BIG, "option payload too large");
                await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            byte[] payload = length == 0 ? [] : new byte[length];
            if (!await ReadExactAsync(payload, cancellationToken).ConfigureAwait(false))
            {
                return EndHandshake("client closed inside an option payload");
            }

            OptionOutcome outcome = HandleOption(option, payload, out NbdExport? selected);
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            switch (outcome)
            {
                case OptionOutcome.Transmit:
                    return selected;
                case OptionOutcome.Close:
                    return EndHandshake($"option {option} ended the handshake");
            }
        }

        return EndHandshake("too many options");
    }

    private NbdExport? EndHandshake(string reason)
    {
        Log.HandshakeEnded(_logger, _id, reason);
        return null;
    }

    /// <summary>
    /// Oldstyle: magic, cliserv magic, size, 32-bit flags (transmission flags in the low half), 124 zeros, and
    /// transmission starts. The reference sends flags 0 (not even HAS_FLAGS), which hides FLUSH from the client;
    /// we advertise the real flags, which a client that ignores them is not affected by.
    /// </summary>
    private void WriteOldstyleGreeting(IBlockImage image)
    {
        const int length = 8 + 8 + OldstyleGreetingTailSize;
        Span<byte> span = _output.GetSpan(length)[..length];
        span.Clear();
        BinaryPrimitives.WriteUInt64BigEndian(span, NBDMAGIC);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], OldstyleMagic);
        BinaryPrimitives.WriteUInt64BigEndian(span[16..], (ulong)image.SizeBytes);
        BinaryPrimitives.WriteUInt32BigEndian(span[24..], TransmissionFlags(image));
        _output.Advance(length);
    }

    private void WriteGreeting()
    {
        Span<byte> span = _output.GetSpan(18);
        BinaryPrimitives.WriteUInt64BigEndian(span, NBDMAGIC);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], IHAVEOPT);
        BinaryPrimitives.WriteUInt16BigEndian(span[16..], NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        _output.Advance(18);
    }

    private OptionOutcome HandleOption(uint option, byte[] payload, out NbdExport? selected)
    {
        selected = null;
        switch (option)
        {
            case NBD_OPT_EXPORT_NAME:
                if (_extendedHeaders)
                {
                    // EXPORT_NAME's reply cannot say the transmission is extended, and it has no error reply: close.
                    return OptionOutcome.Close;
                }

                selected = _server.Resolve(DecodeName(payload));
                if (selected is null)
                {
                    // No error reply exists for EXPORT_NAME: the server closes.
                    return OptionOutcome.Close;
                }

                WriteExportNameReply(selected.Image);
                return OptionOutcome.Transmit;

            case NBD_OPT_ABORT:
                WriteOptionReply(option, NBD_REP_ACK, []);
                return OptionOutcome.Close;

            case NBD_OPT_LIST:
                if (payload.Length != 0)
                {
                    WriteOptionError(option, NBD_REP_ERR_INVALID, "LIST takes no data");
                    return OptionOutcome.Continue;
                }

                foreach (NbdExport export in _server.Exports)
                {
                    WriteServerReply(export);
                }

                WriteOptionReply(option, NBD_REP_ACK, []);
                return OptionOutcome.Continue;

            case NBD_OPT_STARTTLS:
                WriteOptionError(option, payload.Length != 0 ? NBD_REP_ERR_INVALID : NBD_REP_ERR_UNSUP, "TLS is not supported");
                return OptionOutcome.Continue;

            case NBD_OPT_INFO:
            case NBD_OPT_GO:
                return HandleInfoOrGo(option, payload, out selected);

            case NBD_OPT_STRUCTURED_REPLY:
                if (payload.Length != 0)
                {
                    WriteOptionError(option, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
                    return OptionOutcome.Continue;
                }

                if (_extendedHeaders)
                {
                    // Extended headers already imply structured replies; asking again would not downgrade them.
                    WriteOptionError(option, NBD_REP_ERR_INVALID, "extended headers already negotiated");
                    return OptionOutcome.Continue;
                }

                _structuredReplies = true;
                WriteOptionReply(option, NBD_REP_ACK, []);
                return OptionOutcome.Continue;

            case NBD_OPT_EXTENDED_HEADERS:
                if (payload.Length != 0)
                {
                    WriteOptionError(option, NBD_REP_ERR_INVALID, "EXTENDED_HEADERS takes no data");
                    return OptionOutcome.Continue;
                }

                if (_extendedHeaders)
                {
                    WriteOptionError(option, NBD_REP_ERR_INVALID, "extended headers already negotiated");
                    return OptionOutcome.Continue;
                }

                // 32-byte requests and replies from now on, structured replies implied (proto.md).
                _extendedHeaders = true;
                _structuredReplies = true;
                WriteOptionReply(option, NBD_REP_ACK, []);
                return OptionOutcome.Continue;

            case NBD_OPT_LIST_META_CONTEXT:
            case NBD_OPT_SET_META_CONTEXT:
                HandleMetaContext(option, payload);
                return OptionOutcome.Continue;

            default:
                // The payload has been consumed already, so the stream stays in sync (unlike tapdisk, 6.3).
                WriteOptionError(option, NBD_REP_ERR_UNSUP, "unsupported option");
                return OptionOutcome.Continue;
        }
    }

    private OptionOutcome HandleInfoOrGo(uint option, byte[] payload, out NbdExport? selected)
    {
        selected = null;
        ReadOnlySpan<byte> data = payload;
        if (data.Length < 6)
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "truncated request");
            return OptionOutcome.Continue;
        }

        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > (uint)(data.Length - 6))
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "name length exceeds the option");
            return OptionOutcome.Continue;
        }

        int pos = 4 + (int)nameLength;
        int infoCount = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
        pos += 2;
        if (data.Length - pos != infoCount * 2)
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "information request count does not match the option length");
            return OptionOutcome.Continue;
        }

        NbdExport? export = _server.Resolve(DecodeName(data.Slice(4, (int)nameLength)));
        if (export is null)
        {
            WriteOptionError(option, NBD_REP_ERR_UNKNOWN, "no such export");
            return OptionOutcome.Continue;
        }

        IBlockImage image = export.Image;
        Span<byte> info = stackalloc byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, NBD_INFO_EXPORT);
        BinaryPrimitives.WriteUInt64BigEndian(info[2..], (ulong)image.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(info[10..], TransmissionFlags(image));
        WriteOptionReply(option, NBD_REP_INFO, info);

        bool sentName = false, sentDescription = false;
        for (int i = 0; i < infoCount; i++)
        {
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(data[(pos + (2 * i))..]);
            if (type == NBD_INFO_NAME && !sentName)
            {
                WriteInfoString(option, NBD_INFO_NAME, export.Name);
                sentName = true;
            }
            else if (type == NBD_INFO_DESCRIPTION && !sentDescription)
            {
                WriteInfoString(option, NBD_INFO_DESCRIPTION, export.Description);
                sentDescription = true;
            }
        }

        // Block sizes are always sent: requests need not honour them (unaligned I/O is served by read-modify-write).
        (int minimum, int preferred, int maximum) = BlockSizes(image);
        Span<byte> sizes = stackalloc byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(sizes, NBD_INFO_BLOCK_SIZE);
        BinaryPrimitives.WriteUInt32BigEndian(sizes[2..], (uint)minimum);
        BinaryPrimitives.WriteUInt32BigEndian(sizes[6..], (uint)preferred);
        BinaryPrimitives.WriteUInt32BigEndian(sizes[10..], (uint)maximum);
        WriteOptionReply(option, NBD_REP_INFO, sizes);

        WriteOptionReply(option, NBD_REP_ACK, []);
        if (option == NBD_OPT_GO)
        {
            selected = export;
            return OptionOutcome.Transmit;
        }

        return OptionOutcome.Continue;
    }

    private void HandleMetaContext(uint option, byte[] payload)
    {
        bool isSet = option == NBD_OPT_SET_META_CONTEXT;
        if (isSet && !_structuredReplies)
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "structured replies must be negotiated first");
            return;
        }

        ReadOnlySpan<byte> data = payload;
        if (data.Length < 8)
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "truncated request");
            return;
        }

        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > (uint)(data.Length - 8))
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "name length exceeds the option");
            return;
        }

        string name = DecodeName(data.Slice(4, (int)nameLength));
        int pos = 4 + (int)nameLength;
        uint queryCount = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
        pos += 4;

        // The dirty bitmap exists while the export's stack tracks changes (a CBT log is attached).
        NbdExport? export = _server.Resolve(name);
        string? bitmap = export is null ? null : IChangeTracker.Find(export.Image)?.BitmapName;
        string? bitmapContext = bitmap is null ? null : DirtyBitmapPrefix + bitmap;

        // Validate the whole query list before replying anything.
        bool wantsBaseAllocation = queryCount == 0 && !isSet;
        bool wantsDirtyBitmap = queryCount == 0 && !isSet && bitmapContext is not null;
        bool wantsDepth = queryCount == 0 && !isSet;
        int scan = pos;
        for (uint i = 0; i < queryCount; i++)
        {
            if (data.Length - scan < 4)
            {
                WriteOptionError(option, NBD_REP_ERR_INVALID, "truncated query");
                return;
            }

            uint queryLength = BinaryPrimitives.ReadUInt32BigEndian(data[scan..]);
            scan += 4;
            if (queryLength > (uint)(data.Length - scan))
            {
                WriteOptionError(option, NBD_REP_ERR_INVALID, "query length exceeds the option");
                return;
            }

            ReadOnlySpan<byte> query = data.Slice(scan, (int)queryLength);
            scan += (int)queryLength;
            if (query.SequenceEqual("base:allocation"u8) || (!isSet && query.SequenceEqual("base:"u8)))
            {
                wantsBaseAllocation = true;
            }
            else if (bitmapContext is not null
                && (Encoding.ASCII.GetString(query) == bitmapContext || (!isSet && (query.SequenceEqual("qemu:"u8) || query.SequenceEqual("qemu:dirty-bitmap:"u8)))))
            {
                wantsDirtyBitmap = true;
            }

            if (query.SequenceEqual("qemu:allocation-depth"u8) || (!isSet && query.SequenceEqual("qemu:"u8)))
            {
                wantsDepth = true;
            }
        }

        if (scan != data.Length)
        {
            WriteOptionError(option, NBD_REP_ERR_INVALID, "trailing data after the queries");
            return;
        }

        if (export is null)
        {
            WriteOptionError(option, NBD_REP_ERR_UNKNOWN, "no such export");
            return;
        }

        if (isSet)
        {
            _baseAllocation = wantsBaseAllocation;
            _dirtyBitmap = wantsDirtyBitmap;
            _allocationDepth = wantsDepth;
        }

        if (wantsBaseAllocation)
        {
            Span<byte> reply = stackalloc byte[4 + BaseAllocation.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, BaseAllocationContextId);
            Encoding.ASCII.GetBytes(BaseAllocation, reply[4..]);
            WriteOptionReply(option, NBD_REP_META_CONTEXT, reply);
        }

        if (wantsDirtyBitmap)
        {
            byte[] reply = new byte[4 + Encoding.ASCII.GetByteCount(bitmapContext!)];
            BinaryPrimitives.WriteUInt32BigEndian(reply, DirtyBitmapContextId);
            Encoding.ASCII.GetBytes(bitmapContext!, reply.AsSpan(4));
            WriteOptionReply(option, NBD_REP_META_CONTEXT, reply);
        }

        if (wantsDepth)
        {
            Span<byte> reply = stackalloc byte[4 + AllocationDepth.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, AllocationDepthContextId);
            Encoding.ASCII.GetBytes(AllocationDepth, reply[4..]);
            WriteOptionReply(option, NBD_REP_META_CONTEXT, reply);
        }

        WriteOptionReply(option, NBD_REP_ACK, []);
    }

    private void WriteExportNameReply(IBlockImage image)
    {
        int length = 10 + (_clientNoZeroes ? 0 : ExportNameZeroPadSize);
        Span<byte> span = _output.GetSpan(length)[..length];
        span.Clear();
        BinaryPrimitives.WriteUInt64BigEndian(span, (ulong)image.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(span[8..], TransmissionFlags(image));
        _output.Advance(length);
    }

    private void WriteServerReply(NbdExport export)
    {
        // REP_SERVER: u32 name length, name, then free-form description text.
        byte[] name = Encoding.UTF8.GetBytes(export.Name);
        byte[] description = Encoding.UTF8.GetBytes(export.Description);
        byte[] data = new byte[4 + name.Length + description.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data, 4);
        description.CopyTo(data, 4 + name.Length);
        WriteOptionReply(NBD_OPT_LIST, NBD_REP_SERVER, data);
    }

    private void WriteInfoString(uint option, ushort type, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        byte[] data = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(data, type);
        bytes.CopyTo(data, 2);
        WriteOptionReply(option, NBD_REP_INFO, data);
    }

    private void WriteOptionError(uint option, uint errorType, string message) =>
        WriteOptionReply(option, errorType, Encoding.UTF8.GetBytes(message));

    private void WriteOptionReply(uint option, uint type, ReadOnlySpan<byte> data)
    {
        int length = 20 + data.Length;
        Span<byte> span = _output.GetSpan(length);
        BinaryPrimitives.WriteUInt64BigEndian(span, NBD_REP_MAGIC);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], type);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)data.Length);
        data.CopyTo(span[20..]);
        _output.Advance(length);
    }

    private static string DecodeName(ReadOnlySpan<byte> name) =>
        Encoding.UTF8.GetString(name.Length > MaxNameBytes ? name[..MaxNameBytes] : name);

    /// <summary>Transmission flags: every optional feature only when the image's capabilities allow it.</summary>
    internal ushort TransmissionFlags(IBlockImage image)
    {
        ImageCapabilities caps = image.Capabilities;
        bool writable = IsWritable(image);
        int flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_CACHE;
        if (!writable)
        {
            flags |= NBD_FLAG_READ_ONLY;
        }

        if ((caps & ImageCapabilities.Flush) != 0)
        {
            flags |= NBD_FLAG_SEND_FLUSH;
        }

        if (writable && (caps & ImageCapabilities.Fua) != 0)
        {
            flags |= NBD_FLAG_SEND_FUA;
        }

        if (writable && (caps & ImageCapabilities.Trim) != 0)
        {
            flags |= NBD_FLAG_SEND_TRIM;
        }

        if (writable && (caps & ImageCapabilities.Zero) != 0)
        {
            flags |= NBD_FLAG_SEND_WRITE_ZEROES;
            if ((caps & ImageCapabilities.FastZero) != 0)
            {
                flags |= NBD_FLAG_SEND_FAST_ZERO;
            }
        }

        if (_structuredReplies)
        {
            // Every read is answered with a single data chunk, so "don't fragment" is always honoured.
            flags |= NBD_FLAG_SEND_DF;
        }

        if ((caps & ImageCapabilities.MultiConnSafe) != 0)
        {
            flags |= NBD_FLAG_CAN_MULTI_CONN;
        }

        return (ushort)flags;
    }

    private static bool IsWritable(IBlockImage image) => !image.IsReadOnly && (image.Capabilities & ImageCapabilities.Write) != 0;

    /// <summary>Minimum (the image's alignment), preferred and maximum block sizes to advertise.</summary>
    internal (int Minimum, int Preferred, int Maximum) BlockSizes(IBlockImage image)
    {
        int minimum = Math.Clamp(image.Limits.MinimumBlockBytes, 1, 64 * 1024);
        if (!int.IsPow2(minimum))
        {
            minimum = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)minimum);
        }

        int preferred = Math.Max(4096, minimum);
        int maximum = MaxRequestBytes(image);
        maximum -= maximum % preferred;
        return (minimum, preferred, Math.Max(maximum, preferred));
    }

    private int MaxRequestBytes(IBlockImage image)
    {
        int limit = image.Limits.MaximumTransferBytes;
        return limit > 0 ? Math.Min(limit, _options.MaxRequestBytes) : _options.MaxRequestBytes;
    }
}
