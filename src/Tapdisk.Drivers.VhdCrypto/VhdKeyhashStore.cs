using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>Reads and sets a VHD's keyhash (vhd-util key, data-plane.md 3.3): batmap header or extended attribute (1.10).</summary>
public static class VhdKeyhashStore
{
    /// <summary>The VHD's keyhash, or null if it has none.</summary>
    public static VhdKeyhash? Read(string path)
    {
        using VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        return VhdKeyhash.Of(image);
    }

    /// <summary>
    /// Sets cookie 1, nonce and hash. Refused (EINVAL) for fixed VHDs and for any VHD with an allocated block: data
    /// already written would not match the new key. A VHD without a blktap batmap (qemu's) gets the attribute.
    /// </summary>
    public static void Write(string path, VhdKeyhash keyhash)
    {
        VhdBatmapHeader? header;
        bool inBatmap;
        using (VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }))
        {
            if (image.DiskType == VhdDiskType.Fixed)
            {
                throw new ImageOpenException(path, Errno.EINVAL, "a keyhash cannot be set on a fixed VHD");
            }

            if (image.AllocatedBlockCount != 0)
            {
                throw new ImageOpenException(path, Errno.EINVAL, $"keyhash can only be set on an empty VHD; {image.AllocatedBlockCount} blocks are allocated");
            }

            inBatmap = image.KeepsFieldsInBatmap;
            header = image.BatmapHeader;
        }

        using ImageFile file = ImageFile.Open(path, readOnly: false, direct: false);
        if (!inBatmap)
        {
            byte[] record = new byte[VhdExtendedAttributes.KeyhashRecordSize];
            keyhash.WriteRecord(record);
            VhdExtendedAttributes.WriteKeyhash(file, record);
            return;
        }

        if (header is null)
        {
            throw new ImageFormatException(path, 0, "batmap header", "unreadable, so the keyhash has nowhere to go (vhd-util check reports it)");
        }

        header.KeyhashCookie = 1;
        header.KeyhashNonce = (byte[])keyhash.Nonce.Clone();
        header.KeyhashHash = (byte[])keyhash.Hash.Clone();
        byte[] sector = new byte[VhdBatmapHeader.Size];
        header.Write(sector);

        // Exactly one sector: the reference's 1024-byte write, which zeroes the first map sector, is not copied.
        file.Write(sector, (long)header.BatmapOffset - VhdBatmapHeader.Size);
        file.FlushAll();
    }
}
