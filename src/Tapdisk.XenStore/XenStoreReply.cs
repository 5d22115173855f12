namespace Tapdisk.XenStore;

/// <summary>One reply as it came off the wire: its type (the request's, or XS_ERROR) and payload.</summary>
internal readonly record struct XenStoreReply(XenStoreMessageType Type, byte[] Payload);
