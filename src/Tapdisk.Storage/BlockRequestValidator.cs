using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// The one place requests are checked before they reach a stack (nbdkit's backend.c rule): range, read-only and
/// capability. Both frontends go through it (via <see cref="BlockBackend.Validate"/>) and map the errno to their wire.
/// </summary>
public static class BlockRequestValidator
{
    /// <summary>
    /// Returns 0 if the request may go to the image, else the errno to answer with: EINVAL for a read outside the
    /// disk, ENOSPC for a write outside it, EPERM for a change to a read-only disk, EOPNOTSUPP for an operation the
    /// stack lacks. Flushes carry no range.
    /// </summary>
    public static int Validate(IBlockImage image, BlockOperation operation, long offsetBytes, long lengthBytes)
    {
        bool changes = operation is BlockOperation.Write or BlockOperation.Trim or BlockOperation.Zero;
        if (operation != BlockOperation.Flush
            && (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > image.SizeBytes || lengthBytes > image.SizeBytes - offsetBytes))
        {
            return changes ? Errno.ENOSPC : Errno.EINVAL;
        }

        if (!changes)
        {
            return 0;
        }

        ImageCapabilities caps = image.Capabilities;
        if (image.IsReadOnly || (caps & ImageCapabilities.Write) == 0)
        {
            return Errno.EPERM;
        }

        ImageCapabilities needed = operation switch
        {
            BlockOperation.Trim => ImageCapabilities.Trim,
            BlockOperation.Zero => ImageCapabilities.Zero,
            _ => ImageCapabilities.Write,
        };
        return (caps & needed) != 0 ? 0 : Errno.EOPNOTSUPP;
    }
}
