using System.Buffers.Binary;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// Offline access to one VHD file's metadata for the tools (coalesce, resize, repair, fill): footer, header, BAT,
/// sector bitmaps, with block allocation ordered so that a kill at any point leaves a valid VHD. Opened read-write
/// it holds an exclusive flock, as a read-write tapdisk does, so the two never edit the same file.
/// </summary>
public sealed class VhdEditor : IDisposable
{
    private readonly ImageFile _file;
    private readonly byte[] _batArea;
    private uint[] _bat;

    private VhdEditor(ImageFile file, VhdFooter footer, VhdDynamicHeader? header, byte[] batArea, uint[] bat, VhdBatmapHeader? batmap, long endOfMetadataBytes)
    {
        _file = file;
        Footer = footer;
        Header = header;
        _batArea = batArea;
        _bat = bat;
        BatmapHeader = batmap;
        EndOfMetadataBytes = endOfMetadataBytes;
        if (header is not null)
        {
            BitmapSectors = VhdLayout.BitmapSectors(header.BlockSize);
            SectorsPerBlock = (int)(header.BlockSize / VhdLayout.SectorSize);
        }
    }

    public string Path => _file.Path;

    public ImageFile File => _file;

    /// <summary>The footer in use (primary if valid, else the backup); edits are written by <see cref="WriteFooters"/>.</summary>
    public VhdFooter Footer { get; }

    public VhdDynamicHeader? Header { get; }

    public VhdBatmapHeader? BatmapHeader { get; }

    public bool IsDynamic => Header is not null;

    public int BitmapSectors { get; }

    public int SectorsPerBlock { get; }

    /// <summary>Sectors one allocated block occupies (bitmap then data).</summary>
    public long BlockSpanSectors => BitmapSectors + SectorsPerBlock;

    /// <summary>Header, BAT, batmap and locators end here (sector-rounded); no block may start before it.</summary>
    public long EndOfMetadataBytes { get; private set; }

    /// <summary>BAT entries in use: ceil(current size / block size).</summary>
    public int BlockCount => _bat.Length;

    /// <summary>Physical end of data: where the trailing footer belongs.</summary>
    public long EndOfDataBytes
    {
        get
        {
            if (Header is null)
            {
                return (long)Footer.CurrentSize;
            }

            long end = EndOfMetadataBytes;
            foreach (uint e in _bat)
            {
                if (e != VhdLayout.Unallocated)
                {
                    end = Math.Max(end, (e + BlockSpanSectors) * VhdLayout.SectorSize);
                }
            }

            return end;
        }
    }

    /// <summary>
    /// Opens a VHD. <paramref name="strict"/> refuses BAT entries inside the metadata, past the end of the file or
    /// overlapping each other, and for a read-write open also a missing or bad trailing footer and an invalid batmap,
    /// so that no tool writes into an image that vhd-util check would reject; repair opens non-strict.
    /// </summary>
    public static VhdEditor Open(string path, bool readOnly, bool strict = true, bool allowPoisoned = false, VhdFooter? footer = null)
    {
        ImageFile file = ImageFile.Open(path, readOnly, direct: false);
        try
        {
            if (!readOnly && PosixFile.TryLock(file.Handle, exclusive: true) != 0)
            {
                throw new ImageOpenException(path, Errno.EBUSY, "image is open read-write by another process");
            }

            long length = file.Length;
            VhdMetadataReader.FooterSource source = VhdMetadataReader.FooterSource.Primary;
            footer ??= VhdMetadataReader.ReadFooter(file, length, out source, allowPoisoned);
            if (strict && !readOnly && source != VhdMetadataReader.FooterSource.Primary)
            {
                throw new ImageFormatException(path, length - VhdFooter.Size, "trailing footer", "missing or invalid (the image is open in tapdisk, or was not closed cleanly: vhd-util repair rewrites it from the copy at offset 0)");
            }

            if (strict && !readOnly)
            {
                CheckFootersForWriting(file, footer, length);
            }
            if (!footer.IsDynamic)
            {
                if (strict && length < (long)footer.CurrentSize + VhdFooter.Size)
                {
                    throw new ImageFormatException(path, length, "file size", $"fixed VHD of {footer.CurrentSize} bytes needs {footer.CurrentSize + VhdFooter.Size} bytes, file has {length}");
                }

                return new VhdEditor(file, footer, null, [], [], null, 0);
            }

            VhdDynamicHeader header = VhdMetadataReader.ReadHeader(file, footer, length);
            if (header.BlockSize > VhdLayout.BlockSize)
            {
                throw new ImageFormatException(path, (long)footer.DataOffset + VhdDynamicHeader.BlockSizeOffset, "block size", $"{header.BlockSize} is larger than 2 MiB (blktap's limit)");
            }

            long entries = VhdLayout.EntriesFor(footer.CurrentSize, header.BlockSize);
            if (entries > header.MaxTableEntries)
            {
                throw new ImageFormatException(path, (long)footer.DataOffset + VhdDynamicHeader.MaxTableEntriesOffset, "max_bat_size", $"{header.MaxTableEntries} entries cannot map {footer.CurrentSize} bytes ({entries} needed)");
            }

            long batBytes = VhdLayout.BatSectors(header.MaxTableEntries) * VhdLayout.SectorSize;
            if (header.TableOffset % VhdLayout.SectorSize != 0 || (long)header.TableOffset + (entries * 4) > length)
            {
                throw new ImageFormatException(path, (long)footer.DataOffset + VhdDynamicHeader.TableOffsetOffset, "table_offset", $"BAT at {header.TableOffset} does not fit in the {length}-byte file or is not sector-aligned");
            }

            byte[] batArea = new byte[batBytes];
            file.Read(batArea, (long)header.TableOffset);
            uint[] bat = new uint[entries];
            for (int i = 0; i < entries; i++)
            {
                bat[i] = BinaryPrimitives.ReadUInt32BigEndian(batArea.AsSpan(i * 4));
            }

            VhdBatmapHeader? batmap = VhdMetadataReader.ReadBatmapHeader(file, footer, header, length);
            long end = VhdMetadataReader.EndOfMetadata(footer, header, batmap);
            var editor = new VhdEditor(file, footer, header, batArea, bat, batmap, end);
            if (strict)
            {
                editor.ValidateBat(length);
                if (!readOnly && VhdMetadataReader.HasBatmap(footer) && !editor.HasValidBatmap())
                {
                    long at = (long)VhdLayout.BatmapHeaderOffset(header.TableOffset, header.MaxTableEntries);
                    throw new ImageFormatException(path, at, "batmap", "missing, or its checksum does not match the map (vhd-util check reports it)");
                }
            }

            return editor;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>True if the keyhash and marker live in the batmap header rather than in extended attributes (data-plane.md 1.10).</summary>
    public bool KeepsFieldsInBatmap => VhdExtendedAttributes.InBatmap(Footer, BatmapHeader);

    /// <summary>The marker byte, from the batmap header or the attribute.</summary>
    public byte Marker => KeepsFieldsInBatmap ? BatmapHeader?.Marker ?? 0 : VhdExtendedAttributes.ReadMarker(_file);

    /// <summary>The raw 65-byte keyhash record from the batmap header or the attribute (zeros when there is none).</summary>
    public void ReadKeyhashRecord(Span<byte> record)
    {
        record = record[..VhdExtendedAttributes.KeyhashRecordSize];
        if (!KeepsFieldsInBatmap)
        {
            VhdExtendedAttributes.ReadKeyhash(_file, record);
        }
        else if (BatmapHeader is { } batmap)
        {
            batmap.GetKeyhashRecord(record);
        }
        else
        {
            record.Clear();
        }
    }

    /// <summary>Sets the marker: one 512-byte batmap header write, or the attribute for VHDs without a batmap.</summary>
    public void SetMarker(byte marker)
    {
        if (!KeepsFieldsInBatmap)
        {
            VhdExtendedAttributes.WriteMarker(_file, marker);
            return;
        }

        VhdBatmapHeader batmap = BatmapHeader ?? throw new ImageFormatException(Path, 0, "batmap header", "unreadable, so the marker has nowhere to go (vhd-util check reports it)");
        batmap.Marker = marker;
        byte[] bytes = new byte[VhdBatmapHeader.Size];
        batmap.Write(bytes);

        // Exactly one sector. The reference writes 1024 bytes here, zeroing the first map sector without fixing the
        // map checksum, which makes check and read-write opens fail (data-plane.md 1.9); we do not copy that.
        _file.Write(bytes, (long)batmap.BatmapOffset - VhdBatmapHeader.Size);
        _file.FlushAll();
    }

    public uint GetBatEntry(int block) => _bat[block];

    /// <summary>True if the batmap (when present and valid) marks the block's bitmap as all ones.</summary>
    public bool[] ReadFullBlocks()
    {
        bool[] full = new bool[_bat.Length];
        if (BatmapHeader is null)
        {
            return full;
        }

        ulong[] bits = new ulong[(_bat.Length + 63) / 64];
        if (VhdMetadataReader.LoadBatmap(_file, Footer, BatmapHeader, _bat, bits, (int)BatmapHeader.BatmapSize))
        {
            for (int b = 0; b < full.Length; b++)
            {
                full[b] = (bits[b >> 6] & (1UL << (b & 63))) != 0;
            }
        }

        return full;
    }

    /// <summary>True if the batmap header is valid and its checksum matches the map.</summary>
    public bool HasValidBatmap() =>
        BatmapHeader is not null && VhdMetadataReader.LoadBatmap(_file, Footer, BatmapHeader, _bat, new ulong[(_bat.Length + 63) / 64], (int)BatmapHeader.BatmapSize);

    public byte[] ReadBitmap(int block)
    {
        byte[] bitmap = new byte[BitmapSectors * VhdLayout.SectorSize];
        _file.ReadExactly(bitmap, (long)_bat[block] * VhdLayout.SectorSize);
        return bitmap;
    }

    public void WriteBitmap(int block, ReadOnlySpan<byte> bitmap) => _file.Write(bitmap, (long)_bat[block] * VhdLayout.SectorSize);

    /// <summary>Byte offset of a block's data area (after its bitmap).</summary>
    public long DataOffsetBytes(int block) => ((long)_bat[block] + BitmapSectors) * VhdLayout.SectorSize;

    /// <summary>
    /// Allocates <paramref name="block"/> at the end of data with its data page-aligned, ordered so every prefix
    /// is a valid VHD: (1) a footer at the new end, so the file never lacks a trailing footer; (2) the gap, bitmap
    /// and data area zeroed; (3) fdatasync; (4) the BAT sector. A kill before (4) only leaks the space.
    /// </summary>
    public uint AllocateBlock(int block)
    {
        long position = EndOfDataBytes / VhdLayout.SectorSize;
        long entry = position + VhdLayout.AlignmentGap(position, BitmapSectors);
        long newEnd = (entry + BlockSpanSectors) * VhdLayout.SectorSize;
        if (entry + BlockSpanSectors > uint.MaxValue)
        {
            throw new ErrnoIOException(Errno.ENOSPC, Path, $"allocate block {block}: VHD block offsets must stay below 2^32 sectors");
        }

        WriteTrailingFooter(newEnd);
        long start = position * VhdLayout.SectorSize;
        if (!_file.TryZeroRange(start, newEnd - start))
        {
            _file.WriteZeros(start, newEnd - start);
        }

        _file.Flush();
        _bat[block] = (uint)entry;
        WriteBatSector(block);
        return (uint)entry;
    }

    /// <summary>Rewrites the 512-byte BAT sector holding <paramref name="block"/>'s entry from the in-memory BAT.</summary>
    public void WriteBatSector(int block)
    {
        int sector = block / 128;
        BinaryPrimitives.WriteUInt32BigEndian(_batArea.AsSpan(block * 4), _bat[block]);
        _file.Write(_batArea.AsSpan(sector * VhdLayout.SectorSize, VhdLayout.SectorSize), (long)Header!.TableOffset + (sector * VhdLayout.SectorSize));
    }

    /// <summary>Writes the footer at end of data (truncating after it), then the backup copy at 0, then fsync.</summary>
    public void WriteFooters()
    {
        Footer.UpdateChecksum();
        WriteTrailingFooter(EndOfDataBytes);
        if (Header is not null)
        {
            byte[] bytes = new byte[VhdFooter.Size];
            Footer.Write(bytes);
            _file.Write(bytes, 0);
        }

        _file.FlushAll();
    }

    public void Flush() => _file.FlushAll();

    public void Dispose() => _file.Dispose();

    internal static long RoundUpToSector(long bytes) => (bytes + VhdLayout.SectorSize - 1) / VhdLayout.SectorSize * VhdLayout.SectorSize;

    /// <summary>Replaces the in-memory BAT (resize grows it); entries past the old count start unallocated.</summary>
    internal void SetBlockCount(int count)
    {
        uint[] bat = new uint[count];
        Array.Fill(bat, VhdLayout.Unallocated);
        Array.Copy(_bat, bat, Math.Min(count, _bat.Length));
        _bat = bat;
    }

    internal void SetEndOfMetadata(long bytes) => EndOfMetadataBytes = RoundUpToSector(bytes);

    internal void SetBatEntryInMemory(int block, uint entry) => _bat[block] = entry;

    private void WriteTrailingFooter(long atBytes)
    {
        Footer.UpdateChecksum();
        byte[] bytes = new byte[VhdFooter.Size];
        Footer.Write(bytes);
        if (_file.IsBlockDevice)
        {
            _file.Write(bytes, _file.Length - VhdFooter.Size);
            return;
        }

        _file.Write(bytes, atBytes);
        if (_file.Length != atBytes + VhdFooter.Size)
        {
            _file.SetLength(atBytes + VhdFooter.Size);
        }
    }

    /// <summary>
    /// The footer fields check rejects, and for dynamic disks a byte-identical copy at offset 0: a tool that
    /// rewrites the footers must not silently "fix" an image that check reports as corrupt.
    /// </summary>
    private static void CheckFootersForWriting(ImageFile file, VhdFooter footer, long length)
    {
        string path = file.Path;
        if ((footer.Features & ~3u) != 0 || (footer.Features & 2) == 0 || footer.FileFormatVersion != VhdFooter.FormatVersion || VhdUuid.IsNull(footer.UniqueId))
        {
            throw new ImageFormatException(path, length - VhdFooter.Size, "footer", "invalid features, file format version or UUID (vhd-util check reports which)");
        }

        if (footer.IsDynamic)
        {
            byte[] primary = new byte[VhdFooter.Size], backup = new byte[VhdFooter.Size];
            file.ReadExactly(primary, length - VhdFooter.Size);
            file.ReadExactly(backup, 0);
            if (!primary.AsSpan().SequenceEqual(backup))
            {
                throw new ImageFormatException(path, 0, "footer copy", "differs from the trailing footer (vhd-util check reports it; vhd-util repair rewrites both)");
            }
        }
    }

    private void ValidateBat(long length)
    {
        long metadataSectors = EndOfMetadataBytes / VhdLayout.SectorSize;
        var used = new List<(uint Entry, int Block)>();
        for (int i = 0; i < _bat.Length; i++)
        {
            uint e = _bat[i];
            if (e == VhdLayout.Unallocated)
            {
                continue;
            }

            long entryOffset = (long)Header!.TableOffset + (i * 4L);
            if (e < metadataSectors)
            {
                throw new ImageFormatException(Path, entryOffset, $"BAT entry {i}", $"block at sector {e} lies inside the metadata (which ends at sector {metadataSectors})");
            }

            if ((e + BlockSpanSectors) * VhdLayout.SectorSize > length)
            {
                throw new ImageFormatException(Path, entryOffset, $"BAT entry {i}", $"block at sector {e} ends past the end of the {length}-byte file");
            }

            used.Add((e, i));
        }

        used.Sort((a, b) => a.Entry.CompareTo(b.Entry));
        for (int i = 1; i < used.Count; i++)
        {
            if (used[i - 1].Entry + BlockSpanSectors > used[i].Entry)
            {
                throw new ImageFormatException(Path, (long)Header!.TableOffset + (used[i].Block * 4L), $"BAT entry {used[i].Block}", $"block at sector {used[i].Entry} overlaps block {used[i - 1].Block} at sector {used[i - 1].Entry}");
            }
        }
    }
}
