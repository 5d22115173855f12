namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    /// <summary>True if this VHD keeps its keyhash and marker in the batmap header rather than in extended attributes.</summary>
    public bool KeepsFieldsInBatmap => VhdExtendedAttributes.InBatmap(_footer, _batmapHeader);

    /// <summary>The marker byte (vhd-util set -f marker), from the batmap header or the attribute (data-plane.md 1.10).</summary>
    public byte Marker => KeepsFieldsInBatmap ? _batmapHeader?.Marker ?? 0 : VhdExtendedAttributes.ReadMarker(_file);

    /// <summary>
    /// The raw 65-byte keyhash record (cookie, nonce, hash) from the batmap header or the attribute; all zeros when
    /// there is none, including a blktap VHD whose batmap header is unreadable.
    /// </summary>
    public void ReadKeyhashRecord(Span<byte> record)
    {
        record = record[..VhdExtendedAttributes.KeyhashRecordSize];
        if (!KeepsFieldsInBatmap)
        {
            VhdExtendedAttributes.ReadKeyhash(_file, record);
        }
        else if (_batmapHeader is { } batmap)
        {
            batmap.GetKeyhashRecord(record);
        }
        else
        {
            record.Clear();
        }
    }
}
