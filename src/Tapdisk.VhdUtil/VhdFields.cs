using Tapdisk.Drivers.Vhd;

namespace Tapdisk.VhdUtil;

/// <summary>"set -f hidden|marker": hidden lives in both footers, the marker in the batmap header or, without one, an extended attribute (data-plane.md 1.10).</summary>
internal static class VhdFields
{
    /// <summary>Sets a field on an image opened for writing (VhdEditor.Open validates it, so a corrupt image is refused untouched).</summary>
    public static void Set(VhdEditor vhd, string field, byte value)
    {
        if (field == "hidden")
        {
            // Any byte is stored, as the reference does; check then rejects values other than 0 and 1.
            vhd.Footer.Hidden = value;
            vhd.WriteFooters();
            return;
        }

        vhd.SetMarker(value);
    }
}
