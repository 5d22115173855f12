using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>"vhd-util fill" and "vhd-util modify" (data-plane.md 3.4, 1.8).</summary>
public static class VhdModifier
{
    /// <summary>
    /// Allocates every block holding a sector of [<paramref name="firstSector"/>, <paramref name="lastSector"/>]
    /// and completes its bitmap to all ones. Unlike the reference, the guest-visible content never changes: a new block of a
    /// parentless disk is zero (as its sectors read before), and a new block of a differencing disk receives what the
    /// chain below shows, written and synced before the bitmap and BAT entry make it visible.
    /// </summary>
    /// <param name="path">The VHD.</param>
    /// <param name="chainOpener">Opens the parents of a differencing VHD (the caller's driver table).</param>
    /// <param name="firstSector">First virtual sector to cover.</param>
    /// <param name="lastSector">Last virtual sector to cover (inclusive).</param>
    public static int Fill(string path, IImageOpener chainOpener, long firstSector = 0, long lastSector = long.MaxValue)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        if (!vhd.IsDynamic)
        {
            return 0;
        }

        long sectors = (long)vhd.Footer.CurrentSize / VhdLayout.SectorSize;
        lastSector = Math.Min(lastSector, sectors - 1);
        if (firstSector < 0 || firstSector > lastSector)
        {
            return 0;
        }

        VhdImage? below = null;
        try
        {
            if (vhd.Footer.DiskType == VhdDiskType.Differencing)
            {
                // The chain's own view of the child, read-only, before anything is allocated.
                below = VhdImage.Open(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }, chainOpener);
            }

            int spb = vhd.SectorsPerBlock;
            byte[] data = new byte[spb * VhdLayout.SectorSize];
            byte[] fullBitmap = new byte[vhd.BitmapSectors * VhdLayout.SectorSize];
            VhdBitmap.SetRange(fullBitmap, 0, spb);
            int allocated = 0;
            for (long block = firstSector / spb; block <= lastSector / spb; block++)
            {
                int b = (int)block;
                int bytes = (int)Math.Min(data.Length, (long)vhd.Footer.CurrentSize - (block * data.Length));
                byte[] bitmap;
                if (vhd.GetBatEntry(b) == VhdLayout.Unallocated)
                {
                    // Allocation leaves an empty bitmap, so a kill before the bitmap write changes nothing visible.
                    vhd.AllocateBlock(b);
                    bitmap = new byte[fullBitmap.Length];
                    allocated++;
                }
                else
                {
                    bitmap = vhd.ReadBitmap(b);
                    if (VhdBitmap.IsFull(bitmap, spb))
                    {
                        continue;
                    }
                }

                // Sectors the block does not hold yet get what the chain shows there (zeros without a parent).
                Array.Clear(data);
                if (below is not null)
                {
                    below.ReadAsync(block * data.Length, data.AsMemory(0, bytes)).AsTask().GetAwaiter().GetResult();
                }

                int sector = 0;
                while (sector < bytes / VhdLayout.SectorSize)
                {
                    int run = VhdBitmap.RunLength(bitmap, sector, (bytes / VhdLayout.SectorSize) - sector, out bool present);
                    if (!present)
                    {
                        vhd.File.Write(data.AsSpan(sector * VhdLayout.SectorSize, run * VhdLayout.SectorSize), vhd.DataOffsetBytes(b) + ((long)sector * VhdLayout.SectorSize));
                    }

                    sector += run;
                }

                vhd.File.Flush();
                vhd.WriteBitmap(b, fullBitmap);
            }

            vhd.WriteFooters();
            return allocated;
        }
        finally
        {
            below?.Dispose();
        }
    }

    /// <summary>"modify -s": puts the trailing footer at <paramref name="fileSizeBytes"/> − 512 (the file size), never inside data.</summary>
    public static void SetPhysicalSize(string path, long fileSizeBytes)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        if (fileSizeBytes % VhdLayout.SectorSize != 0 || fileSizeBytes - VhdFooter.Size < vhd.EndOfDataBytes)
        {
            throw new ErrnoIOException(Errno.EINVAL, path, $"set physical size {fileSizeBytes}: must be a multiple of 512 and at least {vhd.EndOfDataBytes + VhdFooter.Size} (end of data plus the footer)");
        }

        vhd.Footer.UpdateChecksum();
        byte[] footer = new byte[VhdFooter.Size];
        vhd.Footer.Write(footer);

        // The new footer goes in first, so the file never lacks one; only then is the old one cut or zeroed.
        long oldLength = vhd.File.Length;
        vhd.File.Write(footer, fileSizeBytes - VhdFooter.Size);
        if (fileSizeBytes < oldLength)
        {
            vhd.File.SetLength(fileSizeBytes);
        }
        else if (oldLength - VhdFooter.Size >= vhd.EndOfDataBytes && oldLength < fileSizeBytes)
        {
            vhd.File.WriteZeros(oldLength - VhdFooter.Size, VhdFooter.Size);
        }

        vhd.Flush();
    }

    /// <summary>"modify -z": every block unallocated, batmap cleared; the trailing footer moves to the end of the metadata.</summary>
    public static void Zero(string path)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        if (!vhd.IsDynamic)
        {
            throw new ErrnoIOException(Errno.EINVAL, path, "zero: not a dynamic VHD");
        }

        VhdDynamicHeader header = vhd.Header!;
        if (vhd.BatmapHeader is VhdBatmapHeader bm)
        {
            // Map before BAT: a kill in between leaves a valid, more conservative batmap.
            byte[] map = new byte[bm.BatmapSize * VhdLayout.SectorSize];
            bm.Checksum = VhdChecksum.ComputeBatmap(map.AsSpan(0, Math.Min(map.Length, VhdBatmapHeader.ChecksummedMapBytes(vhd.Footer.CurrentSize))), signedBytes: false);
            byte[] bmBytes = new byte[VhdBatmapHeader.Size];
            bm.Write(bmBytes);
            vhd.File.Write(map, (long)bm.BatmapOffset);
            vhd.File.Write(bmBytes, (long)bm.BatmapOffset - VhdBatmapHeader.Size);
        }

        for (int b = 0; b < vhd.BlockCount; b++)
        {
            vhd.SetBatEntryInMemory(b, VhdLayout.Unallocated);
        }

        byte[] bat = new byte[VhdLayout.BatSectors(header.MaxTableEntries) * VhdLayout.SectorSize];
        bat.AsSpan(0, (int)header.MaxTableEntries * 4).Fill(0xFF);
        vhd.File.Write(bat, (long)header.TableOffset);
        vhd.WriteFooters();
    }

    /// <summary>
    /// "modify -p": points a differencing VHD at another parent (a VHD, or raw with <paramref name="parentIsRaw"/>):
    /// parent UUID, timestamp and name, and each MacX/W2ku/W2ru locator rewritten in place (ENAMETOOLONG if the new
    /// path does not fit its slot). Locators are written before the header that names the new parent.
    /// </summary>
    public static void SetParent(string path, string newParent, bool parentIsRaw)
    {
        using VhdEditor vhd = VhdEditor.Open(path, readOnly: false);
        if (vhd.Footer.DiskType != VhdDiskType.Differencing)
        {
            throw new ErrnoIOException(Errno.EINVAL, path, "set parent: not a differencing VHD");
        }

        if (!File.Exists(newParent))
        {
            throw new ErrnoIOException(Errno.ENOENT, newParent, "set parent");
        }

        string parentCanonical = ImageOpener.CanonicalPath(newParent);
        byte[] uuid = new byte[16];
        if (!parentIsRaw)
        {
            using VhdImage parent = VhdImage.OpenSingle(parentCanonical, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
            uuid = parent.Footer.UniqueId;
        }

        VhdDynamicHeader header = vhd.Header!;
        string relative = VhdParentPath.Relative(ImageOpener.CanonicalPath(path), parentCanonical);
        var writes = new List<(long Offset, byte[] Payload)>();
        for (int i = 0; i < header.Locators.Length; i++)
        {
            VhdParentLocator loc = header.Locators[i];
            byte[]? encoded = loc.PlatformCode switch
            {
                VhdParentLocator.MacX => VhdParentPath.EncodeMacX(relative),
                VhdParentLocator.W2ku or VhdParentLocator.W2ru => VhdParentPath.EncodeWindows(relative),
                _ => null,
            };
            if (encoded is null)
            {
                continue;
            }

            if (encoded.Length > loc.DataSpaceBytes)
            {
                throw new ErrnoIOException(Errno.ENAMETOOLONG, path, $"set parent: '{relative}' does not fit parent locator {i} ({loc.DataSpaceBytes} bytes)");
            }

            byte[] padded = new byte[loc.DataSpaceBytes];
            encoded.CopyTo(padded, 0);
            writes.Add(((long)loc.DataOffset, padded));
            header.Locators[i] = loc with { DataLength = (uint)encoded.Length };
        }

        header.ParentUuid = uuid;
        header.ParentName = Path.GetFileName(parentCanonical);
        header.ParentTimestamp = (uint)Math.Max(0, new DateTimeOffset(File.GetLastWriteTimeUtc(parentCanonical)).ToUnixTimeSeconds() - 946684800);
        header.UpdateChecksum();
        foreach ((long offset, byte[] payload) in writes)
        {
            vhd.File.Write(payload, offset);
        }

        vhd.File.Flush();
        byte[] headerBytes = new byte[VhdDynamicHeader.Size];
        header.Write(headerBytes);
        vhd.File.Write(headerBytes, (long)vhd.Footer.DataOffset);
        vhd.Flush();
    }

}
