namespace Tapdisk.Abi;

/// <summary>The parts of fstat(2) the storage layer needs.</summary>
public readonly record struct FileStatus(long Size, bool IsBlockDevice, bool IsRegularFile, long AllocatedBytes, ulong Device, ulong Inode)
{
    /// <summary>st_mtim in nanoseconds since the epoch.</summary>
    public long ModifiedNs { get; init; }

    /// <summary>st_ctim in nanoseconds since the epoch: set by the kernel on every data or inode change, never by utimes.</summary>
    public long ChangedNs { get; init; }

    /// <summary>st_uid: the owner.</summary>
    public uint OwnerUid { get; init; }

    /// <summary>The permission bits of st_mode (0o7777).</summary>
    public uint Permissions { get; init; }
}
