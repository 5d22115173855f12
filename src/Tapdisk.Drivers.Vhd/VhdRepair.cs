using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>"vhd-util repair" (data-plane.md 3.4): rebuilds both footers from the one that is still good.</summary>
public static class VhdRepair
{
    /// <summary>
    /// Takes the trailing footer (or the backup at 0 with <paramref name="preferBackup"/>; either falls back to the
    /// other when it is unusable), gives it a UUID if it has none, and writes it at end of data (truncating after it)
    /// and at 0. Block entries are not judged here: check reports them.
    /// </summary>
    public static void Repair(string path, bool preferBackup)
    {
        VhdFooter chosen;
        using (ImageFile probe = ImageFile.Open(path, readOnly: true, direct: false))
        {
            long length = probe.Length;
            byte[] buffer = new byte[VhdFooter.Size];
            VhdFooter? primary = null, backup = null;
            if (length >= VhdFooter.Size)
            {
                probe.ReadExactly(buffer, length - VhdFooter.Size);
                primary = Usable(VhdFooter.Read(buffer));
                probe.ReadExactly(buffer, 0);
                backup = Usable(VhdFooter.Read(buffer));
                if (backup is { IsDynamic: false })
                {
                    backup = null;
                }
            }

            chosen = (preferBackup ? backup ?? primary : primary ?? backup)
                ?? throw new ImageFormatException(path, Math.Max(0, length - VhdFooter.Size), "footer", "neither the trailing footer nor the copy at offset 0 is a valid VHD footer: nothing to repair from");
        }

        if (VhdUuid.IsNull(chosen.UniqueId))
        {
            chosen.UniqueId = VhdUuid.NewRandom();
        }

        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false, strict: false, footer: chosen);
        vhd.WriteFooters();
    }

    private static VhdFooter? Usable(VhdFooter footer) =>
        footer.HasValidCookie && footer.HasValidChecksum && footer.DiskTypeValue is 2 or 3 or 4 ? footer : null;
}
