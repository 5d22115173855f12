using System.Buffers.Binary;

namespace Tapdisk.XenStore;

/// <summary>
/// <c>struct xsd_sockmsg</c>: the 16-byte header in front of every message, little-endian (the wire is native endian
/// and we only run on little-endian Linux). <c>len</c> counts the payload bytes that follow.
/// </summary>
public readonly record struct XenStoreHeader(XenStoreMessageType Type, uint RequestId, uint TransactionId, uint Length)
{
    public const int Size = 16;

    /// <summary>XENSTORE_PAYLOAD_MAX: xenstored drops a connection that sends more.</summary>
    public const int PayloadMax = 4096;

    private const int TypeOffset = 0;
    private const int RequestIdOffset = 4;
    private const int TransactionIdOffset = 8;
    private const int LengthOffset = 12;

    public static XenStoreHeader Read(ReadOnlySpan<byte> source) => new(
        (XenStoreMessageType)BinaryPrimitives.ReadUInt32LittleEndian(source[TypeOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[RequestIdOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[TransactionIdOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[LengthOffset..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination[TypeOffset..], (uint)Type);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[RequestIdOffset..], RequestId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[TransactionIdOffset..], TransactionId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[LengthOffset..], Length);
    }
}
