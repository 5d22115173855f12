using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>Reads and sets the keyhash in a VHD's batmap header (vhd-util key, data-plane.md 3.3).</summary>
public static class VhdKeyhashStore
{
    /// <summary>The VHD's keyhash, or null if it has none.</summary>
    public static VhdKeyhash? Read(string path)
    {
        using VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        return VhdKeyhash.Of(image);
    }

    /// <summary>
    /// Sets cookie 1, nonce and hash. Refused (EINVAL) for VHDs without a batmap (fixed or non-blktap) and for any VHD
    /// with an allocated block: data already written would not match the new key.
    /// </summary>
    public static void Write(string path, VhdKeyhash keyhash)
    {
        VhdBatmapHeader header;
        using (VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }))
        {
            if (image.BatmapHeader is not { } batmap)
            {
                // blktap keeps such keyhashes in an extended attribute (data-plane.md 1.10); we do not write those.
                throw new ImageOpenException(path, Errno.EINVAL, "this VHD has no blktap batmap header to hold a keyhash");
            }

            if (image.AllocatedBlockCount != 0)
            {
                throw new ImageOpenException(path, Errno.EINVAL, $"keyhash can only be set on an empty VHD; {image.AllocatedBlockCount} blocks are allocated");
            }

            header = batmap;
        }

        header.KeyhashCookie = 1;
        header.KeyhashNonce = (byte[])keyhash.Nonce.Clone();
        header.KeyhashHash = (byte[])keyhash.Hash.Clone();
        byte[] sector = new byte[VhdBatmapHeader.Size];
        header.Write(sector);

        // Exactly one sector: the reference's 1024-byte write, which zeroes the first map sector, is not copied.
        using ImageFile file = ImageFile.Open(path, readOnly: false, direct: false);
        file.Write(sector, (long)header.BatmapOffset - VhdBatmapHeader.Size);
        file.FlushAll();
    }
}
