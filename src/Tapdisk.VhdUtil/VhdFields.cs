using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;

namespace Tapdisk.VhdUtil;

/// <summary>"set -f hidden|marker": hidden lives in both footers, the marker in the batmap header (data-plane.md 1.10).</summary>
internal static class VhdFields
{
    /// <summary>Sets a field after the same validation every writing tool does: a corrupt image is refused untouched.</summary>
    public static void Set(string path, string field, byte value)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        if (field == "hidden")
        {
            // Any byte is stored, as the reference does; check then rejects values other than 0 and 1.
            vhd.Footer.Hidden = value;
            vhd.WriteFooters();
            return;
        }

        VhdBatmapHeader batmap = vhd.BatmapHeader ?? throw new ErrnoIOException(Errno.EOPNOTSUPP, path, "set marker (no batmap: not a blktap VHD)");
        batmap.Marker = value;
        byte[] bytes = new byte[VhdBatmapHeader.Size];
        batmap.Write(bytes);

        // Exactly one sector. The reference writes 1024 bytes here, zeroing the first map sector without fixing the
        // map checksum, which makes check and read-write opens fail (data-plane.md 1.9); we do not copy that.
        vhd.File.Write(bytes, (long)batmap.BatmapOffset - VhdBatmapHeader.Size);
        vhd.Flush();
    }
}
