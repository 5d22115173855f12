using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// Where the keyhash and marker live (data-plane.md 1.10): in the batmap header for blktap VHDs, otherwise in two
/// extended attributes of the file. A missing attribute, or a file system without them, reads as all zeros.
/// </summary>
public static class VhdExtendedAttributes
{
    public const string KeyhashName = "user.com.citrix.xenclient.backend.keyhash";
    public const string MarkerName = "user.com.citrix.xenclient.backend.marker";

    /// <summary>The raw keyhash record: cookie byte, 32-byte nonce, 32-byte SHA-256, no padding.</summary>
    public const int KeyhashRecordSize = 1 + 32 + 32;

    /// <summary>
    /// True if the keyhash and marker belong in the batmap header: a dynamic "tap" VHD of version 1.2 or later, or
    /// 1.1 with a batmap header found (the reference's vhd_has_batmap). Everything else uses the attributes.
    /// </summary>
    public static bool InBatmap(VhdFooter footer, VhdBatmapHeader? batmap) =>
        VhdMetadataReader.HasBatmap(footer) && (footer.CreatorVersion >= 0x00010002 || batmap is not null);

    public static byte ReadMarker(ImageFile file)
    {
        Span<byte> value = stackalloc byte[1];
        return PosixFile.GetXattr(file.Handle, MarkerName, value, file.Path) > 0 ? value[0] : (byte)0;
    }

    public static void WriteMarker(ImageFile file, byte marker) => PosixFile.SetXattr(file.Handle, MarkerName, [marker], file.Path);

    /// <summary>Fills <paramref name="record"/> (65 bytes) from the attribute; zeros where it is missing or shorter.</summary>
    public static void ReadKeyhash(ImageFile file, Span<byte> record)
    {
        record = record[..KeyhashRecordSize];
        record.Clear();
        int n = PosixFile.GetXattr(file.Handle, KeyhashName, record, file.Path);
        if (n >= 0 && n < KeyhashRecordSize)
        {
            record[n..].Clear();
        }
    }

    public static void WriteKeyhash(ImageFile file, ReadOnlySpan<byte> record) =>
        PosixFile.SetXattr(file.Handle, KeyhashName, record[..KeyhashRecordSize], file.Path);
}
