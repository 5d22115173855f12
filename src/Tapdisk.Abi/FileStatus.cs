namespace Tapdisk.Abi;

/// <summary>The parts of fstat(2) the storage layer needs.</summary>
public readonly record struct FileStatus(long Size, bool IsBlockDevice, bool IsRegularFile, long AllocatedBytes, ulong Device, ulong Inode);
