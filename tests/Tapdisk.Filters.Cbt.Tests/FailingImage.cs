using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Cbt.Tests;

/// <summary>A layer whose writes all fail with EIO (a full disk below the log, as blktap's S5c).</summary>
internal sealed class FailingImage(IBlockImage next) : BlockFilter(next)
{
    public override string DriverName => "test-failing";

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(new ErrnoIOException(Errno.EIO, "failing", "write"));
}
