using System.Globalization;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Abi.Tests;

/// <summary>PosixFile against a real disk-backed file system (TAPDISK_TEST_TMP, default /var/tmp).</summary>
public sealed class PosixFileTests : IDisposable
{
    private const int BlockSize = 4096;
    private const int Chunk = 256 * 1024;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Open_Direct_AlignedWriteReadRoundTrip()
    {
        string path = _dir.File("direct.img");
        using SafeFdHandle fd = OpenDirect(path);
        using var source = new AlignedMemory(2 * BlockSize);
        using var destination = new AlignedMemory(2 * BlockSize);
        Span<byte> data = source.GetSpan();
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(i * 7 + 3);
        }

        Assert.True(PosixFile.IsAligned(data, BlockSize));

        PosixFile.Write(fd, data, BlockSize, path);
        int read = PosixFile.Read(fd, destination.GetSpan(), BlockSize, path);

        Assert.Equal(data.Length, read);
        Assert.True(data.SequenceEqual(destination.GetSpan()));
        Assert.Equal(3L * BlockSize, PosixFile.Stat(fd, path).Size);
    }

    [Fact]
    public void Open_Direct_KernelRecordsDirectLargeFileAndCloseOnExec()
    {
        // OpenFlags.LargeFile is the kernel's 0x8000 although glibc spells O_LARGEFILE as 0 on x86-64
        // (native/abi-probes/README.md): /proc shows what actually reached the open file description.
        string path = _dir.File("flags.img");
        using SafeFdHandle fd = OpenDirect(path);

        int flags = FdInfoFlags(fd);

        Assert.Equal((int)OpenFlags.Direct, flags & (int)OpenFlags.Direct);
        Assert.Equal((int)OpenFlags.LargeFile, flags & (int)OpenFlags.LargeFile);
        Assert.Equal((int)OpenFlags.CloseOnExec, flags & (int)OpenFlags.CloseOnExec);
        Assert.Equal((int)OpenFlags.ReadWrite, flags & 0x3);
    }

    [Fact]
    public void TryFallocate_PunchHole_ReadsZerosAndSeekFindsTheHole()
    {
        string path = _dir.File("sparse.img");
        using SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive);
        byte[] data = new byte[3 * Chunk];
        data.AsSpan().Fill(0xAB);
        PosixFile.Write(fd, data, 0, path);
        PosixFile.Sync(fd, path);
        long allocatedBefore = PosixFile.Stat(fd, path).AllocatedBytes;

        int errno = PosixFile.TryFallocate(fd, FallocateMode.PunchHole, Chunk, Chunk);

        Assert.True(errno == 0, $"fallocate(PUNCH_HOLE) on {path} failed with errno {errno} ({Errno.Describe(errno)}); point TAPDISK_TEST_TMP at ext4/xfs");
        byte[] back = new byte[data.Length];
        Assert.Equal(back.Length, PosixFile.Read(fd, back, 0, path));
        Assert.True(back.AsSpan(0, Chunk).IndexOfAnyExcept((byte)0xAB) < 0, "data before the hole changed");
        Assert.True(back.AsSpan(Chunk, Chunk).IndexOfAnyExcept((byte)0) < 0, "the punched range does not read as zeros");
        Assert.True(back.AsSpan(2 * Chunk).IndexOfAnyExcept((byte)0xAB) < 0, "data after the hole changed");

        FileStatus status = PosixFile.Stat(fd, path);
        Assert.Equal(3L * Chunk, status.Size);
        Assert.True(status.AllocatedBytes <= allocatedBefore - Chunk, $"allocation did not shrink: {allocatedBefore} -> {status.AllocatedBytes}");

        Assert.Equal(Chunk, PosixFile.SeekDataOrHole(fd, 0, data: false, out errno));
        Assert.Equal(0, errno);
        Assert.Equal(2L * Chunk, PosixFile.SeekDataOrHole(fd, Chunk, data: true, out errno));
        Assert.Equal(0, errno);
    }

    [Fact]
    public void SeekDataOrHole_PastLastData_ReturnsMinusOneWithEnxio()
    {
        string path = _dir.File("tail.img");
        using SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.Create);
        PosixFile.Write(fd, new byte[BlockSize], 0, path);
        PosixFile.Truncate(fd, 16L * Chunk, path);

        long r = PosixFile.SeekDataOrHole(fd, 8L * Chunk, data: true, out int errno);

        Assert.Equal(-1, r);
        Assert.Equal(Errno.ENXIO, errno);
    }

    [Fact]
    public void Open_MissingFile_ThrowsErrnoIOExceptionWithEnoentAndPath()
    {
        string path = _dir.File("does-not-exist.img");

        ErrnoIOException ex = Assert.Throws<ErrnoIOException>(() => PosixFile.Open(path, OpenFlags.ReadOnly));

        Assert.Equal(Errno.ENOENT, ex.Errno);
        Assert.Equal(2, ex.Errno);
        Assert.Equal(path, ex.Path);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("No such file or directory", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TryOpen_CreateExclusiveOnExistingFile_ReturnsEexist()
    {
        string path = _dir.File("exists.img");
        File.WriteAllBytes(path, [1]);

        int errno = PosixFile.TryOpen(path, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive, 0x1A4, out SafeFdHandle handle);

        using (handle)
        {
            Assert.Equal(Errno.EEXIST, errno);
            Assert.True(handle.IsInvalid);
        }
    }

    [Fact]
    public void Stat_RegularFile_ReportsSizeTypeAndIdentity()
    {
        string path = _dir.File("stat.img");
        using SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.Create);
        PosixFile.Truncate(fd, 3 * Chunk + 5, path);

        FileStatus status = PosixFile.Stat(fd, path);

        Assert.Equal(3L * Chunk + 5, status.Size);
        Assert.True(status.IsRegularFile);
        Assert.False(status.IsBlockDevice);
        Assert.NotEqual(0UL, status.Inode);
    }

    [Fact]
    public void TryLock_SecondExclusiveLock_ReportsEagain()
    {
        string path = _dir.File("lock.img");
        using SafeFdHandle first = PosixFile.Open(path, OpenFlags.ReadWrite | OpenFlags.Create);
        using SafeFdHandle second = PosixFile.Open(path, OpenFlags.ReadWrite);

        Assert.Equal(0, PosixFile.TryLock(first, exclusive: true));
        Assert.Equal(Errno.EAGAIN, PosixFile.TryLock(second, exclusive: true));
        Assert.Equal(Errno.EAGAIN, PosixFile.TryLock(second, exclusive: false));
    }

    private static SafeFdHandle OpenDirect(string path)
    {
        int errno = PosixFile.TryOpen(path, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Direct, 0x1A4, out SafeFdHandle fd);
        Assert.True(errno == 0, $"open(O_DIRECT) of {path} failed with errno {errno} ({Errno.Describe(errno)}); TAPDISK_TEST_TMP must be on a disk-backed file system");
        return fd;
    }

    /// <summary>The "flags:" line of /proc/self/fdinfo/FD (octal).</summary>
    private static int FdInfoFlags(SafeFdHandle fd)
    {
        string line = File.ReadLines($"/proc/self/fdinfo/{fd.Fd.ToString(CultureInfo.InvariantCulture)}").First(l => l.StartsWith("flags:", StringComparison.Ordinal));
        return Convert.ToInt32(line["flags:".Length..].Trim(), 8);
    }

    [Fact]
    public void Xattr_SetGetRoundTrip_MissingReadsAsAbsent()
    {
        string path = _dir.File("x.img");
        File.WriteAllBytes(path, new byte[512]);
        using SafeFdHandle fd = PosixFile.Open(path, OpenFlags.ReadWrite);
        byte[] value = new byte[16];
        Assert.Equal(-1, PosixFile.GetXattr(fd, "user.tapdisk.test", value, path));

        PosixFile.SetXattr(fd, "user.tapdisk.test", [1, 2, 3], path);
        Assert.Equal(3, PosixFile.GetXattr(fd, "user.tapdisk.test", value, path));
        Assert.Equal(new byte[] { 1, 2, 3 }, value[..3]);

        // Too small a buffer is an error, not a silent truncation.
        var e = Assert.Throws<ErrnoIOException>(() => PosixFile.GetXattr(fd, "user.tapdisk.test", new byte[2], path));
        Assert.Equal(Errno.ERANGE, e.Errno);
    }

    [Fact]
    public void Xattr_FileSystemWithoutUserAttributes_ReadsAbsentAndSetSaysSo()
    {
        // procfs keeps no user extended attributes: fgetxattr and fsetxattr fail with ENOTSUP there.
        using SafeFdHandle fd = PosixFile.Open("/proc/self/comm", OpenFlags.ReadOnly);
        Assert.Equal(-1, PosixFile.GetXattr(fd, "user.tapdisk.test", new byte[4], "/proc/self/comm"));
        var e = Assert.Throws<ErrnoIOException>(() => PosixFile.SetXattr(fd, "user.tapdisk.test", [1], "/proc/self/comm"));
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
        Assert.Contains("does not support user extended attributes", e.Message, StringComparison.Ordinal);
    }
}
