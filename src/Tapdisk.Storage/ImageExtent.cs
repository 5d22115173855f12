namespace Tapdisk.Storage;

public readonly record struct ImageExtent(long OffsetBytes, long LengthBytes, ExtentFlags Flags);
