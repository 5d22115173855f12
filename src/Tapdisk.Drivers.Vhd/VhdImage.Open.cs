using System.Buffers.Binary;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    /// <summary>Opens a VHD and, for a differencing disk, its parents through <paramref name="opener"/>.</summary>
    public static VhdImage Open(string path, ImageOpenOptions options, IImageOpener opener) => Open(path, options, opener, openParents: true);

    /// <summary>Opens one VHD file alone (tools inspecting a chain link by link); reads below it see zeros.</summary>
    public static VhdImage OpenSingle(string path, ImageOpenOptions options) => Open(path, options, opener: null, openParents: false);

    private static VhdImage Open(string path, ImageOpenOptions options, IImageOpener? opener, bool openParents)
    {
        ImageFile file = ImageFile.Open(path, options.ReadOnly, options.DirectIo);
        IBlockImage? parent = null;
        try
        {
            if (!options.ReadOnly && PosixFile.TryLock(file.Handle, exclusive: true) != 0)
            {
                throw new ImageOpenException(path, Errno.EBUSY, "image is already open read-write by another process");
            }

            long length = file.Length;
            VhdFooter footer = VhdMetadataReader.ReadFooter(file, length, out VhdMetadataReader.FooterSource footerSource);
            if (!footer.IsDynamic)
            {
                if (length < (long)footer.CurrentSize + VhdFooter.Size)
                {
                    throw new ImageFormatException(path, length, "file size", $"fixed VHD of {footer.CurrentSize} bytes needs at least {footer.CurrentSize + VhdFooter.Size} bytes, file has {length}");
                }

                return new VhdImage(file, footer, null, options, null, default);
            }

            VhdDynamicHeader header = VhdMetadataReader.ReadHeader(file, footer, length);
            DynamicState state = LoadDynamicState(file, footer, header, length, footerSource);
            if (footer.DiskType == VhdDiskType.Differencing && openParents)
            {
                parent = OpenParent(file.Path, header, options, opener!);
            }

            return new VhdImage(file, footer, header, options, parent, state);
        }
        catch
        {
            parent?.Dispose();
            file.Dispose();
            throw;
        }
    }

    private static DynamicState LoadDynamicState(ImageFile file, VhdFooter footer, VhdDynamicHeader header, long length, VhdMetadataReader.FooterSource footerSource)
    {
        string path = file.Path;
        long entries = VhdLayout.EntriesFor(footer.CurrentSize, header.BlockSize);
        if (entries > header.MaxTableEntries)
        {
            throw new ImageFormatException(path, VhdFooter.CurrentSizeOffset, "current size", $"{footer.CurrentSize} bytes needs {entries} BAT entries but max_bat_size is {header.MaxTableEntries}");
        }

        long batSectors = VhdLayout.BatSectors((uint)Math.Max(entries, 1));
        long batBytes = batSectors * VhdLayout.SectorSize;
        if ((long)header.TableOffset + batBytes > length || header.TableOffset % VhdLayout.SectorSize != 0)
        {
            throw new ImageFormatException(path, (long)footer.DataOffset + VhdDynamicHeader.TableOffsetOffset, "table_offset", $"BAT at {header.TableOffset} ({batBytes} bytes) does not fit in the {length}-byte file or is not sector-aligned");
        }

        byte[] batArea = new byte[batBytes];
        file.ReadExactly(batArea, (long)header.TableOffset);
        var bat = new uint[entries];
        for (int i = 0; i < entries; i++)
        {
            bat[i] = BinaryPrimitives.ReadUInt32BigEndian(batArea.AsSpan(i * 4));
        }

        int bitmapSectors = VhdLayout.BitmapSectors(header.BlockSize);
        long blockSectors = bitmapSectors + (header.BlockSize / VhdLayout.SectorSize);

        VhdBatmapHeader? batmapHeader = VhdMetadataReader.ReadBatmapHeader(file, footer, header, length);
        long endOfMetadata = VhdMetadataReader.EndOfMetadata(footer, header, batmapHeader);
        long metadataSectors = endOfMetadata / VhdLayout.SectorSize;

        // Every used entry must point after the metadata, have its bitmap inside the file, and not overlap another block.
        var used = new List<(uint Entry, int Block)>();
        long nextDataSector = metadataSectors;
        for (int i = 0; i < entries; i++)
        {
            uint e = bat[i];
            if (e == VhdLayout.Unallocated)
            {
                continue;
            }

            long batEntryOffset = (long)header.TableOffset + (i * 4L);
            if (e < metadataSectors)
            {
                throw new ImageFormatException(path, batEntryOffset, $"BAT entry {i}", $"block at sector {e} lies inside the metadata (which ends at sector {metadataSectors})");
            }

            if (((long)e + bitmapSectors) * VhdLayout.SectorSize > length)
            {
                throw new ImageFormatException(path, batEntryOffset, $"BAT entry {i}", $"block at sector {e} (byte {(long)e * VhdLayout.SectorSize}) lies past the end of the {length}-byte file");
            }

            used.Add((e, i));
            nextDataSector = Math.Max(nextDataSector, e + blockSectors);
        }

        used.Sort((a, b) => a.Entry.CompareTo(b.Entry));
        for (int i = 1; i < used.Count; i++)
        {
            if ((long)used[i - 1].Entry + blockSectors > used[i].Entry)
            {
                throw new ImageFormatException(path, (long)header.TableOffset + (used[i].Block * 4L), $"BAT entry {used[i].Block}", $"block at sector {used[i].Entry} overlaps block {used[i - 1].Block} at sector {used[i - 1].Entry}");
            }
        }

        ulong[] full = new ulong[(entries + 63) / 64];
        int writableSectors = 0;
        bool batmapNeedsRepair = false;
        if (batmapHeader is not null)
        {
            writableSectors = (int)batmapHeader.BatmapSize;

            // Files from the reference's sizing quirk reserve one map sector fewer than the header says: if anything
            // starts inside the last declared sector, that sector is not ours to write (data-plane.md 1.9).
            long lastSectorStart = (long)batmapHeader.BatmapOffset + ((batmapHeader.BatmapSize - 1L) * VhdLayout.SectorSize);
            long lastSectorEnd = lastSectorStart + VhdLayout.SectorSize;
            bool shared = used.Exists(u => (long)u.Entry * VhdLayout.SectorSize < lastSectorEnd && (long)u.Entry * VhdLayout.SectorSize >= lastSectorStart);
            foreach (VhdParentLocator loc in header.Locators)
            {
                shared |= loc.PlatformCode != VhdParentLocator.None && (long)loc.DataOffset >= lastSectorStart && (long)loc.DataOffset < lastSectorEnd;
            }

            if (shared)
            {
                writableSectors--;
            }

            // An unreadable or mis-summed map is treated as absent (no block known full) and rewritten at close.
            batmapNeedsRepair = !VhdMetadataReader.LoadBatmap(file, footer, batmapHeader, bat, full, writableSectors);
        }

        // No valid trailing footer: the image was open read-write when its writer died (the first allocation overwrites
        // the footer, data-plane.md 2.3.5) or a close did not finish. Close rewrites it where the BAT says data ends
        // and truncates leaked blocks after it (2.4). Deliberate difference from blktap: tapdisk only does this when
        // something was written, so a session of no writes or only in-place rewrites leaves a file vhd-util check
        // rejects; we repair whatever the session did. Not when an allocated block runs past the end of the file (a
        // truncated copy, never our crash: allocation sizes the file before the BAT points into it), since a footer
        // after it would turn the missing sectors, which reads fail with EIO (8.2), into zeros; vhd-util repair is
        // the explicit way to accept that loss.
        bool footerNeedsRepair = !file.IsReadOnly
            && footerSource == VhdMetadataReader.FooterSource.Backup
            && length >= nextDataSector * VhdLayout.SectorSize;

        return new DynamicState(bat, batArea, full, batmapHeader, writableSectors, endOfMetadata, nextDataSector, batmapNeedsRepair, footerNeedsRepair);
    }

    private static IBlockImage OpenParent(string childPath, VhdDynamicHeader header, ImageOpenOptions options, IImageOpener opener)
    {
        string childCanonical = ImageOpener.CanonicalPath(childPath);
        if (options.ParentOverride is { } stacked)
        {
            // Stacked on another VBD's export (tap-ctl -e): that VBD already opened and checked the parent chain, and
            // an export has no UUID to compare, so the locators and the UUID check are blktap's to skip too.
            return opener.Open(stacked.DriverName, stacked.Path, options.ForParentOf(childCanonical));
        }

        string? parentPath = VhdMetadataReader.ResolveParent(childPath, childCanonical, header, out string tried);
        if (parentPath is null)
        {
            throw new ImageOpenException(childPath, Errno.ENOENT, $"parent '{header.ParentName}' not found (locators tried: {tried})");
        }

        ImageOpenOptions parentOptions = options.ForParentOf(childCanonical);
        bool rawParent = VhdUuid.IsNull(header.ParentUuid);
        IBlockImage parent = opener.Open(rawParent ? "aio" : VhdImageDriver.DriverName, parentPath, parentOptions);
        if (!rawParent)
        {
            if (parent is not VhdImage vhdParent)
            {
                parent.Dispose();
                throw new ImageOpenException(childPath, Errno.EINVAL, $"parent {parentPath} is not a VHD");
            }

            byte[] parentUuid = vhdParent._footer.UniqueId;
            if (!parentUuid.AsSpan().SequenceEqual(header.ParentUuid))
            {
                parent.Dispose();
                throw new ImageFormatException(childPath, 512 + VhdDynamicHeader.ParentUuidOffset, "parent UUID", $"header names parent {VhdUuid.Format(header.ParentUuid)} but {parentPath} has UUID {VhdUuid.Format(parentUuid)}");
            }
        }

        if (options.ParentFilter is not { } wrap)
        {
            return parent;
        }

        try
        {
            return wrap(parent);
        }
        catch
        {
            parent.Dispose();
            throw;
        }
    }
}
