using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Nbd.Tests;

public sealed class NbdErrorsTests
{
    [Theory]
    [InlineData(0, 0u)]
    [InlineData(Errno.EPERM, 1u)]
    [InlineData(Errno.EACCES, 1u)]
    [InlineData(Errno.EROFS, 1u)]
    [InlineData(Errno.EIO, 5u)]
    [InlineData(Errno.ENOMEM, 12u)]
    [InlineData(Errno.EINVAL, 22u)]
    [InlineData(Errno.ENOSPC, 28u)]
    [InlineData(Errno.EFBIG, 28u)]
    [InlineData(Errno.EOVERFLOW, 75u)]
    [InlineData(Errno.EOPNOTSUPP, 95u)]
    [InlineData(Errno.ESHUTDOWN, 108u)]
    [InlineData(Errno.ENODEV, 5u)]
    public void FromErrno_KnownErrno_MapsToWireValue(int errno, uint expected) => Assert.Equal(expected, NbdErrors.FromErrno(errno));

    [Fact]
    public void FromException_DriverExceptions_GoThroughStorageErrors()
    {
        Assert.Equal(28u, NbdErrors.FromException(new ErrnoIOException(Errno.ENOSPC, "f", "write")));
        Assert.Equal(22u, NbdErrors.FromException(new ImageFormatException("bad footer")));
        Assert.Equal(108u, NbdErrors.FromException(new ObjectDisposedException("image")));
        Assert.Equal(5u, NbdErrors.FromException(new InvalidOperationException()));
    }
}
