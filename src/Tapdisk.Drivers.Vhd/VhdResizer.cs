using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// "vhd-util resize" and "revert" (data-plane.md 3.4, 1.15). The journaled grow records every region it will
/// overwrite, poisons the VHD (cookie "v_poison", which every reader refuses), moves the data blocks that sit where
/// the larger BAT and batmap go, writes the new metadata and only then restores the cookie. A kill at any point
/// leaves either the untouched VHD, a poisoned VHD whose journal restores it (<see cref="Revert"/>), or the grown
/// VHD; replaying a leftover journal is always safe because it restores the original image exactly.
/// </summary>
public static class VhdResizer
{
    /// <summary>Named points between the steps of a journaled resize, for crash tests.</summary>
    public static readonly string[] CheckpointNames = ["journaled", "poisoned", "moving", "moved", "metadata", "committed"];

    /// <summary>Online resize (-f): only the footer changes, within the BAT preallocated by -S.</summary>
    public static void ResizeFast(string path, long newSizeBytes)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        CheckResizable(vhd, newSizeBytes);
        VhdDynamicHeader header = vhd.Header!;
        if (VhdLayout.EntriesFor((ulong)newSizeBytes, header.BlockSize) > header.MaxTableEntries)
        {
            throw new ErrnoIOException(Errno.EINVAL, path, $"fast resize to {newSizeBytes} bytes needs more than the {header.MaxTableEntries} preallocated BAT entries");
        }

        if (newSizeBytes < (long)vhd.Footer.CurrentSize)
        {
            throw new ErrnoIOException(Errno.ENOSYS, path, "dynamic shrink not fully implemented");
        }

        SetSize(vhd.Footer, newSizeBytes);
        vhd.WriteFooters();
    }

    /// <summary>Offline journaled grow (-j). <paramref name="checkpoint"/> runs after each step (tests kill the process there).</summary>
    public static void ResizeJournaled(string path, long newSizeBytes, string journalPath, Action<string>? checkpoint = null)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        CheckResizable(vhd, newSizeBytes);
        if (newSizeBytes < (long)vhd.Footer.CurrentSize)
        {
            throw new ErrnoIOException(Errno.ENOSYS, path, "dynamic shrink not fully implemented");
        }

        if (File.Exists(journalPath))
        {
            throw new ErrnoIOException(Errno.EEXIST, journalPath, "create journal (a previous resize may need vhd-util revert)");
        }

        if (newSizeBytes == (long)vhd.Footer.CurrentSize)
        {
            return;
        }

        VhdDynamicHeader header = vhd.Header!;
        ImageFile file = vhd.File;
        long oldLength = file.Length;
        long oldFooterOffset = oldLength - VhdFooter.Size;
        int newEntries = (int)VhdLayout.EntriesFor((ulong)newSizeBytes, header.BlockSize);
        uint newMaxBat = Math.Max(header.MaxTableEntries, (uint)newEntries);
        bool relayout = newMaxBat != header.MaxTableEntries;

        // New metadata layout (blktap's order, data-plane.md 1.1): BAT, batmap header, map, locator payloads.
        long batBytes = VhdLayout.BatSectors(newMaxBat) * VhdLayout.SectorSize;
        long batmapHeaderOffset = (long)header.TableOffset + batBytes;
        uint batmapSectors = VhdBatmapHeader.SectorsFor(newMaxBat);
        bool hasBatmap = vhd.BatmapHeader is not null;
        long next = hasBatmap ? batmapHeaderOffset + VhdBatmapHeader.Size + (batmapSectors * (long)VhdLayout.SectorSize) : batmapHeaderOffset;
        var locators = new (VhdParentLocator Old, long NewOffset)[header.Locators.Length];
        for (int i = 0; i < header.Locators.Length; i++)
        {
            VhdParentLocator loc = header.Locators[i];
            if (loc.PlatformCode == VhdParentLocator.None || loc.DataOffset == 0)
            {
                continue;
            }

            locators[i] = (loc, next);
            next += VhdEditor.RoundUpToSector(loc.DataSpaceBytes);
        }

        long newMetadataEnd = relayout ? next : vhd.EndOfMetadataBytes;

        // Blocks whose bitmap or data would lie under the new metadata move to the end, in file order.
        var moves = new List<(int Block, uint From)>();
        for (int b = 0; b < vhd.BlockCount; b++)
        {
            uint e = vhd.GetBatEntry(b);
            if (e != VhdLayout.Unallocated && (long)e * VhdLayout.SectorSize < newMetadataEnd)
            {
                moves.Add((b, e));
            }
        }

        moves.Sort((a, b) => a.From.CompareTo(b.From));

        // 1. Journal every region this resize overwrites, then the header that makes the journal valid.
        var journal = VhdJournal.ForVhd(vhd.Footer.UniqueId, oldFooterOffset);
        journal.Add(VhdJournal.EntryType.FooterCopy, file, 0, VhdFooter.Size);
        journal.Add(VhdJournal.EntryType.Header, file, (long)vhd.Footer.DataOffset, VhdDynamicHeader.Size);
        journal.Add(VhdJournal.EntryType.Bat, file, (long)header.TableOffset, (int)(VhdLayout.BatSectors(header.MaxTableEntries) * VhdLayout.SectorSize));
        if (hasBatmap)
        {
            VhdBatmapHeader bm = vhd.BatmapHeader!;
            journal.Add(VhdJournal.EntryType.BatmapHeader, file, (long)bm.BatmapOffset - VhdBatmapHeader.Size, VhdBatmapHeader.Size);
            journal.Add(VhdJournal.EntryType.Batmap, file, (long)bm.BatmapOffset, (int)bm.BatmapSize * VhdLayout.SectorSize);
        }

        foreach ((VhdParentLocator old, long _) in locators)
        {
            if (old.PlatformCode != VhdParentLocator.None)
            {
                journal.Add(VhdJournal.EntryType.Locator, file, (long)old.DataOffset, (int)old.DataSpaceBytes);
            }
        }

        foreach ((int block, uint from) in moves)
        {
            journal.Add(VhdJournal.EntryType.Data, file, (long)from * VhdLayout.SectorSize, (int)(vhd.BlockSpanSectors * VhdLayout.SectorSize));
        }

        journal.Add(VhdJournal.EntryType.PrimaryFooter, file, oldFooterOffset, VhdFooter.Size);
        journal.Save(journalPath);
        checkpoint?.Invoke("journaled");

        // 2. Disable the VHD: from here until step 5 every reader refuses it, and revert restores it.
        byte[] conectix = vhd.Footer.CookieBytes;
        vhd.Footer.CookieBytes = VhdFooter.PoisonCookie.ToArray();
        WriteBothFooters(vhd, oldFooterOffset);
        checkpoint?.Invoke("poisoned");

        // 3. Move the blocks in the way to the end of the file (never below the new metadata).
        long nextSector = Math.Max(vhd.EndOfDataBytes, newMetadataEnd) / VhdLayout.SectorSize;
        byte[] blockBytes = new byte[vhd.BlockSpanSectors * VhdLayout.SectorSize];
        foreach ((int block, uint from) in moves)
        {
            long to = nextSector + VhdLayout.AlignmentGap(nextSector, vhd.BitmapSectors);
            if (to + vhd.BlockSpanSectors > uint.MaxValue)
            {
                throw new ErrnoIOException(Errno.ENOSPC, path, "resize: moved blocks would lie past 2^32 sectors");
            }

            file.ReadExactly(blockBytes, (long)from * VhdLayout.SectorSize);
            file.Write(blockBytes, to * VhdLayout.SectorSize);
            vhd.SetBatEntryInMemory(block, (uint)to);
            nextSector = to + vhd.BlockSpanSectors;
            checkpoint?.Invoke("moving");
        }

        file.FlushAll();
        checkpoint?.Invoke("moved");

        // 4. New metadata: locators, batmap, BAT, header, then the (still poisoned) footers at the new end.
        if (relayout)
        {
            WriteNewMetadata(vhd, header, newMaxBat, newSizeBytes, batmapHeaderOffset, batmapSectors, locators);
            vhd.SetEndOfMetadata(newMetadataEnd);
        }

        vhd.SetBlockCount(newEntries);
        SetSize(vhd.Footer, newSizeBytes);
        WriteBothFooters(vhd, vhd.EndOfDataBytes);
        checkpoint?.Invoke("metadata");

        // 5. Commit: the real cookie again (trailing footer first, then the copy), then drop the journal.
        vhd.Footer.CookieBytes = conectix;
        WriteBothFooters(vhd, vhd.EndOfDataBytes);
        checkpoint?.Invoke("committed");
        File.Delete(journalPath);
    }

    /// <summary>"vhd-util revert": restores the VHD from a journal, then deletes the journal.</summary>
    public static void Revert(string path, string journalPath)
    {
        VhdJournal journal = VhdJournal.Load(journalPath);
        using ImageFile file = ImageFile.Open(path, readOnly: false, direct: false);
        if (PosixFile.TryLock(file.Handle, exclusive: true) != 0)
        {
            throw new ImageOpenException(path, Errno.EBUSY, "image is open read-write by another process");
        }

        if (journal.MetadataEntries.Count > 0)
        {
            // Only a journal of this VHD may be replayed onto it (the UUID is never changed by resize).
            VhdFooter current = VhdMetadataReader.ReadFooter(file, file.Length, out _, allowPoisoned: true);
            if (!current.UniqueId.AsSpan().SequenceEqual(journal.VhdUuid))
            {
                throw new ImageFormatException(journalPath, 8, "journal VHD UUID", $"journal is for {VhdUuid.Format(journal.VhdUuid)}, {path} is {VhdUuid.Format(current.UniqueId)}");
            }

            journal.Replay(file);
        }

        File.Delete(journalPath);
    }

    private static void CheckResizable(VhdEditor vhd, long newSizeBytes)
    {
        if (!vhd.IsDynamic)
        {
            throw new ErrnoIOException(Errno.EINVAL, vhd.Path, "resize of fixed VHDs is not supported");
        }

        if (!vhd.Footer.IsTapCreator)
        {
            throw new ErrnoIOException(Errno.EINVAL, vhd.Path, $"resize is only supported for VHDs created by blktap (creator is '{vhd.Footer.CreatorName}')");
        }

        if (newSizeBytes <= 0 || newSizeBytes % VhdLayout.SectorSize != 0 || newSizeBytes > VhdLayout.MaxSizeBytes)
        {
            throw new ErrnoIOException(Errno.EINVAL, vhd.Path, $"size {newSizeBytes} is not a whole number of sectors up to 2040 GiB");
        }
    }

    private static void SetSize(VhdFooter footer, long sizeBytes)
    {
        footer.CurrentSize = (ulong)sizeBytes;
        footer.Geometry = VhdGeometry.ForSize(sizeBytes).Encoded;
    }

    private static void WriteBothFooters(VhdEditor vhd, long trailingAtBytes)
    {
        vhd.Footer.UpdateChecksum();
        byte[] bytes = new byte[VhdFooter.Size];
        vhd.Footer.Write(bytes);
        vhd.File.Write(bytes, trailingAtBytes);
        if (vhd.File.Length > trailingAtBytes + VhdFooter.Size)
        {
            vhd.File.SetLength(trailingAtBytes + VhdFooter.Size);
        }

        vhd.File.Write(bytes, 0);
        vhd.File.FlushAll();
    }

    private static void WriteNewMetadata(VhdEditor vhd, VhdDynamicHeader header, uint newMaxBat, long newSizeBytes, long batmapHeaderOffset, uint batmapSectors, (VhdParentLocator Old, long NewOffset)[] locators)
    {
        ImageFile file = vhd.File;

        // Locator payloads are read before anything overwrites them.
        var payloads = new byte[locators.Length][];
        for (int i = 0; i < locators.Length; i++)
        {
            VhdParentLocator old = locators[i].Old;
            if (old.PlatformCode != VhdParentLocator.None)
            {
                payloads[i] = new byte[VhdEditor.RoundUpToSector(old.DataSpaceBytes)];
                file.Read(payloads[i], (long)old.DataOffset);
            }
        }

        bool[] full = vhd.ReadFullBlocks();
        byte[] bat = new byte[batmapHeaderOffset - (long)header.TableOffset];
        bat.AsSpan(0, (int)newMaxBat * 4).Fill(0xFF);
        for (int b = 0; b < vhd.BlockCount; b++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bat.AsSpan(b * 4), vhd.GetBatEntry(b));
        }

        file.Write(bat, (long)header.TableOffset);
        if (vhd.BatmapHeader is VhdBatmapHeader bm)
        {
            byte[] map = new byte[batmapSectors * VhdLayout.SectorSize];
            for (int b = 0; b < full.Length; b++)
            {
                if (full[b])
                {
                    map[b >> 3] |= (byte)(0x80 >> (b & 7));
                }
            }

            bm.BatmapOffset = (ulong)batmapHeaderOffset + VhdBatmapHeader.Size;
            bm.BatmapSize = batmapSectors;
            bm.Version = VhdBatmapHeader.CurrentVersion;
            bm.Checksum = VhdChecksum.ComputeBatmap(map.AsSpan(0, Math.Min(map.Length, VhdBatmapHeader.ChecksummedMapBytes((ulong)newSizeBytes))), signedBytes: false);
            byte[] bmBytes = new byte[VhdBatmapHeader.Size];
            bm.Write(bmBytes);
            file.Write(bmBytes, batmapHeaderOffset);
            file.Write(map, (long)bm.BatmapOffset);
        }

        for (int i = 0; i < locators.Length; i++)
        {
            if (payloads[i] is byte[] payload)
            {
                file.Write(payload, locators[i].NewOffset);
                VhdParentLocator old = locators[i].Old;
                header.Locators[i] = old with { DataOffset = (ulong)locators[i].NewOffset };
            }
        }

        header.MaxTableEntries = newMaxBat;
        header.UpdateChecksum();
        byte[] headerBytes = new byte[VhdDynamicHeader.Size];
        header.Write(headerBytes);
        file.Write(headerBytes, (long)vhd.Footer.DataOffset);
        file.FlushAll();
    }
}
