using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"set -f hidden|marker": hidden lives in both footers, the marker in the batmap header (data-plane.md 1.10).</summary>
internal static class VhdFields
{
    public static void Set(string path, string field, byte value)
    {
        VhdFileInfo info = VhdFileInfo.Read(path);
        VhdFooter footer = info.Footer ?? throw new ImageFormatException(path, info.Length - VhdFooter.Size, "footer", "no valid footer");
        using ImageFile file = ImageFile.Open(path, readOnly: false, direct: false);
        if (field == "hidden")
        {
            footer.Hidden = value;
            footer.UpdateChecksum();
            byte[] bytes = new byte[VhdFooter.Size];
            footer.Write(bytes);
            if (info.Primary is { HasValidCookie: true, HasValidChecksum: true } || !footer.IsDynamic)
            {
                file.Write(bytes, info.Length - VhdFooter.Size);
            }

            if (footer.IsDynamic)
            {
                file.Write(bytes, 0);
            }
        }
        else
        {
            VhdBatmapHeader batmap = info.Batmap ?? throw new ErrnoIOException(Errno.EOPNOTSUPP, path, "set marker (no batmap: not a blktap VHD)");
            batmap.Marker = value;
            byte[] bytes = new byte[VhdBatmapHeader.Size];
            batmap.Write(bytes);

            // Exactly one sector: the reference writes 1024 bytes here and wipes the first map sector (data-plane.md 1.9).
            file.Write(bytes, (long)batmap.BatmapOffset - VhdBatmapHeader.Size);
        }

        file.FlushAll();
    }
}
