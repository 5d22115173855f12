namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    /// <summary>
    /// Close of a written image, or of one opened read-write without a valid trailing footer (data-plane.md 2.4):
    /// trailing footer at end of data and truncate, backup footer at 0, batmap map then header, fsync. Until this
    /// runs, readers use the backup footer, as with blktap.
    /// </summary>
    private void WriteMetadataAtClose()
    {
        byte[] footer = new byte[VhdFooter.Size];
        _footer.UpdateChecksum();
        _footer.Write(footer);
        if (_header is null)
        {
            _file.FlushAll();
            return;
        }

        long end = EndOfDataBytes;
        if (_file.IsBlockDevice)
        {
            _file.Write(footer, _file.Length - VhdFooter.Size);
        }
        else
        {
            _file.Write(footer, end);
            _file.SetLength(end + VhdFooter.Size);
        }

        _file.Write(footer, 0);
        WriteBatmap();
        _file.FlushAll();
    }

    private void WriteBatmap()
    {
        VhdBatmapHeader? header = _batmapHeader;
        if (header is null || _batmapWritableSectors <= 0)
        {
            return;
        }

        byte[] map = new byte[header.BatmapSize * VhdLayout.SectorSize];
        int limit = Math.Min(_bat.Length, _batmapWritableSectors * VhdLayout.SectorSize * 8);
        for (int b = 0; b < limit; b++)
        {
            if (IsBlockFull(b) && GetBatEntry(b) != VhdLayout.Unallocated)
            {
                map[b >> 3] |= (byte)(0x80 >> (b & 7));
            }
        }

        int summed = Math.Min(VhdBatmapHeader.ChecksummedMapBytes(_footer.CurrentSize), map.Length);
        header.Checksum = VhdChecksum.ComputeBatmap(map.AsSpan(0, summed), signedBytes: false);
        header.Version = VhdBatmapHeader.CurrentVersion;
        _file.Write(map.AsSpan(0, _batmapWritableSectors * VhdLayout.SectorSize), (long)header.BatmapOffset);
        byte[] headerBytes = new byte[VhdBatmapHeader.Size];
        header.Write(headerBytes);
        _file.Write(headerBytes, (long)header.BatmapOffset - VhdBatmapHeader.Size);
    }
}
