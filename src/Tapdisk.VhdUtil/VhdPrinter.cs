using System.Globalization;
using System.Text;
using Tapdisk.Drivers.Vhd;

namespace Tapdisk.VhdUtil;

/// <summary>vhd-util's "read -p" / check dump format, field for field (reference-transcript.md section 5).</summary>
internal static class VhdPrinter
{
    public static string Ctime(uint vhdTimestamp)
    {
        DateTime t = VhdFooter.Epoch.AddSeconds(vhdTimestamp);
        return string.Create(CultureInfo.InvariantCulture, $"{t:ddd MMM} {t.Day,2} {t:HH:mm:ss yyyy}");
    }

    public static string Footer(VhdFooter f, bool hex = false)
    {
        var sb = new StringBuilder();
        sb.Append("VHD Footer Summary:\n-------------------\n");
        Line(sb, "Cookie", Encoding.ASCII.GetString(f.CookieBytes).TrimEnd('\0'));
        string features = (f.Features & 1) != 0 ? "<TEMP>" : string.Empty;
        features += (f.Features & 2) != 0 ? "<RESV>" : string.Empty;
        Line(sb, "Features", $"(0x{f.Features:x8}) {features}");
        Line(sb, "File format version", $"Major: {f.FileFormatVersion >> 16}, Minor: {f.FileFormatVersion & 0xFFFF}");
        Line(sb, "Data offset", Num(f.DataOffset, hex));
        Line(sb, "Timestamp", Ctime(f.Timestamp));
        Line(sb, "Creator Application", $"'{f.CreatorName}'");
        Line(sb, "Creator version", $"Major: {f.CreatorVersion >> 16}, Minor: {f.CreatorVersion & 0xFFFF}");
        string os = f.CreatorHostOs switch
        {
            0x5769326B => "Windows",
            0x4D616320 => "Macintosh",
            _ => "Unknown!",
        };
        Line(sb, "Creator OS", os);
        Line(sb, "Original disk size", $"{Num(f.OriginalSize >> 20, hex)} MB ({Num(f.OriginalSize, hex)} Bytes)");
        Line(sb, "Current disk size", $"{Num(f.CurrentSize >> 20, hex)} MB ({Num(f.CurrentSize, hex)} Bytes)");
        VhdGeometry g = VhdGeometry.FromEncoded(f.Geometry);
        Line(sb, "Geometry", $"Cyl: {Num((ulong)g.Cylinders, hex)}, Hds: {Num((ulong)g.Heads, hex)}, Sctrs: {Num((ulong)g.SectorsPerTrack, hex)}");
        Line(sb, string.Empty, $"= {Num((ulong)g.SizeBytes >> 20, hex)} MB ({Num((ulong)g.SizeBytes, hex)} Bytes)");
        // blktap's type table; past it the reference prints "Unknown type!" with its own extra newline.
        string type = f.DiskTypeValue switch
        {
            0 => "None",
            2 => "Fixed hard disk",
            3 => "Dynamic hard disk",
            4 => "Differencing hard disk",
            1 or 5 or 6 => "Reserved (deprecated)",
            _ => "Unknown type!\n",
        };
        Line(sb, "Disk type", type);
        uint computed = f.ComputeChecksum();
        Line(sb, "Checksum", $"{Checksums(f.Checksum, computed)} ({(computed == f.Checksum ? "Good!" : "Bad!")})");
        Line(sb, "UUID", VhdUuid.Format(f.UniqueId));
        Line(sb, "Saved state", f.SavedState == 0 ? "No" : "Yes");
        Line(sb, "Hidden", f.Hidden.ToString(CultureInfo.InvariantCulture));
        sb.Append('\n');
        return sb.ToString();
    }

    public static string Header(VhdDynamicHeader h, bool hex = false)
    {
        var sb = new StringBuilder();
        sb.Append("VHD Header Summary:\n-------------------\n");
        Line(sb, "Cookie", Encoding.ASCII.GetString(h.CookieBytes).TrimEnd('\0'));
        Line(sb, "Data offset (unusd)", Num(h.DataOffset, hex));
        Line(sb, "Table offset", Num(h.TableOffset, hex));
        Line(sb, "Header version", $"0x{h.Version:x8}");
        Line(sb, "Max BAT size", Num(h.MaxTableEntries, hex));
        Line(sb, "Block size", $"{Num(h.BlockSize, hex)} ({Num(h.BlockSize >> 20, hex)} MB)");
        Line(sb, "Parent name", h.ParentName);
        Line(sb, "Parent UUID", VhdUuid.Format(h.ParentUuid));
        Line(sb, "Parent timestamp", Ctime(h.ParentTimestamp));
        uint computed = h.ComputeChecksum();
        Line(sb, "Checksum", $"{Checksums(h.Checksum, computed)} ({(computed == h.Checksum ? "Good!" : "Bad!")})");
        sb.Append('\n');
        return sb.ToString();
    }

    public static string Locators(VhdFileInfo info, bool hex = false)
    {
        VhdDynamicHeader h = info.Header!;
        var sb = new StringBuilder();
        sb.Append("VHD Parent Locators:\n--------------------\n");
        for (int i = 0; i < h.Locators.Length; i++)
        {
            VhdParentLocator loc = h.Locators[i];
            if (loc.PlatformCode == VhdParentLocator.None)
            {
                continue;
            }

            sb.Append(CultureInfo.InvariantCulture, $"locator:            : {i}\n");
            sb.Append(CultureInfo.InvariantCulture, $"       code         : PLAT_CODE_{VhdParentLocator.CodeName(loc.PlatformCode).Trim().ToUpperInvariant()}\n");
            sb.Append(CultureInfo.InvariantCulture, $"       data_space   : {Num(loc.DataSpace, hex)}\n");
            sb.Append(CultureInfo.InvariantCulture, $"       data_length  : {Num(loc.DataLength, hex)}\n");
            sb.Append(CultureInfo.InvariantCulture, $"       data_offset  : {Num(loc.DataOffset, hex)}\n");
            sb.Append(CultureInfo.InvariantCulture, $"       decoded name : {info.LocatorNames[i]}\n\n");
        }

        return sb.ToString();
    }

    public static string Batmap(VhdFileInfo info, bool hex = false)
    {
        VhdBatmapHeader b = info.Batmap!;
        var sb = new StringBuilder();
        sb.Append("VHD Batmap Summary:\n-------------------\n");
        Line(sb, "Batmap offset", Num(b.BatmapOffset, hex));
        Line(sb, "Batmap size (secs)", Num(b.BatmapSize, hex));
        Line(sb, "Batmap version", $"0x{b.Version:x8}");
        if (b.KeyhashCookie == 1)
        {
            Line(sb, "Batmap keyhash nonce", Convert.ToHexStringLower(b.KeyhashNonce));
            Line(sb, "Batmap keyhash hash ", Convert.ToHexStringLower(b.KeyhashHash));
        }

        uint computed = info.ComputedBatmapChecksum();
        Line(sb, "Checksum", $"{Checksums(b.Checksum, computed)} ({(computed == b.Checksum ? "Good!" : "Bad!")})");
        sb.Append('\n');
        return sb.ToString();
    }

    /// <summary>
    /// Everything "read -p" prints for a file. <paramref name="hex"/> (read -x) prints sizes and offsets as 0x…, as the
    /// transcript's "read -p -x" shows; versions, checksums, hidden and the locator slot number stay as they are.
    /// </summary>
    public static string All(VhdFileInfo info, bool hex = false)
    {
        var sb = new StringBuilder();
        if (info.Footer is not null)
        {
            sb.Append(Footer(info.Footer, hex));
        }

        if (info.Header is not null)
        {
            sb.Append(Header(info.Header, hex));
            if (info.Footer?.DiskTypeValue == (uint)VhdDiskType.Differencing)
            {
                sb.Append(Locators(info, hex));
            }
        }

        if (info.Batmap is not null)
        {
            sb.Append(Batmap(info, hex));
        }

        return sb.ToString();
    }

    /// <summary>
    /// What "read" prints when libvhd cannot open the file: the failure, then the raw header dump. That dump shows the
    /// primary footer as read and the header it points at; whatever could not be read stays a zeroed struct, and the
    /// header is read only behind a dynamic footer, so a junk file dumps an all-zero footer ("None") and header.
    /// Without <paramref name="info"/> (the file cannot be opened at all) only the two banners are printed.
    /// </summary>
    public static string OpenFailed(string name, int errno, VhdFileInfo? info = null, bool hex = false)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"Failed to open {name}: -{errno}\n\n{name} appears invalid; dumping headers\n\n");
        if (info is not null)
        {
            sb.Append(Footer(info.Primary ?? VhdFooter.Read(new byte[VhdFooter.Size]), hex));
            sb.Append(Header(info.Header ?? VhdDynamicHeader.Read(new byte[VhdDynamicHeader.Size]), hex));
        }

        return sb.ToString();
    }

    /// <summary>Stored and computed checksums as the reference prints them ("0x%x|0x%x": no zero padding).</summary>
    public static string Checksums(uint stored, uint computed) => $"0x{stored:x}|0x{computed:x}";

    /// <summary>A number as vhd-util's conv() prints it: decimal, or 0x-prefixed lowercase hex with -x.</summary>
    public static string Num(ulong value, bool hex) => hex ? $"0x{value:x}" : value.ToString(CultureInfo.InvariantCulture);

    private static void Line(StringBuilder sb, string label, string value) =>
        sb.Append(label.PadRight(20)).Append(": ").Append(value).Append('\n');
}
