using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>The one place request ranges are checked before they reach a driver (nbdkit's backend.c rule).</summary>
public static class BlockRequestValidator
{
    /// <summary>Returns 0 if the request may go to the image, else the errno to answer with.</summary>
    public static int Validate(IBlockImage image, long offsetBytes, long lengthBytes, bool isWrite)
    {
        if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > image.SizeBytes || lengthBytes > image.SizeBytes - offsetBytes)
        {
            return isWrite ? Errno.ENOSPC : Errno.EINVAL;
        }

        if (isWrite && image.IsReadOnly)
        {
            return Errno.EPERM;
        }

        return 0;
    }
}
