using System.Numerics;
using System.Text;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>Reads and validates VHD metadata structures; every failure names the file, field and offset.</summary>
public static class VhdMetadataReader
{
    /// <summary>Where the footer in use came from.</summary>
    public enum FooterSource
    {
        Primary,
        ShortFooter,
        Backup,
    }

    /// <summary>
    /// Finds a trustworthy footer (data-plane.md 1.4): EOF-512, a 511-byte footer, else the backup at 0. The backup is
    /// the normal case while blktap (or we) hold the image open read-write, and after a crash.
    /// </summary>
    public static VhdFooter ReadFooter(ImageFile file, long length, out FooterSource source, bool allowPoisoned = false)
    {
        string path = file.Path;
        if (length < VhdFooter.Size)
        {
            throw new ImageFormatException(path, 0, "file size", $"{length} bytes is too short for a VHD footer (512 bytes)");
        }

        byte[] buffer = new byte[VhdFooter.Size];
        file.ReadExactly(buffer, length - VhdFooter.Size);
        VhdFooter primary = VhdFooter.Read(buffer);
        string? primaryProblem = Problem(primary, allowPoisoned);
        if (primaryProblem is null)
        {
            source = FooterSource.Primary;
            return Checked(path, primary, length - VhdFooter.Size);
        }

        if (length % VhdLayout.SectorSize == 511)
        {
            file.ReadExactly(buffer.AsSpan(0, 511), length - 511);
            buffer[511] = 0;
            VhdFooter shortFooter = VhdFooter.Read(buffer);
            if (Problem(shortFooter, allowPoisoned) is null)
            {
                source = FooterSource.ShortFooter;
                return Checked(path, shortFooter, length - 511);
            }
        }

        file.ReadExactly(buffer, 0);
        VhdFooter backup = VhdFooter.Read(buffer);
        string? backupProblem = Problem(backup, allowPoisoned);
        if (backupProblem is null && backup.IsDynamic)
        {
            source = FooterSource.Backup;
            return Checked(path, backup, 0);
        }

        backupProblem ??= "not a dynamic-disk footer copy";
        throw new ImageFormatException(path, length - VhdFooter.Size, "footer",
            $"no valid footer: at offset {length - VhdFooter.Size}: {primaryProblem}; backup at offset 0: {backupProblem} (vhd-util repair may recover it)");
    }

    private static string? Problem(VhdFooter footer, bool allowPoisoned)
    {
        if (footer.IsPoisoned)
        {
            return allowPoisoned ? null : "VHD is disabled (cookie v_poison: a journaled operation did not finish)";
        }

        if (!footer.HasValidCookie)
        {
            return "invalid cookie";
        }

        if (!footer.HasValidChecksum)
        {
            return $"checksum 0x{footer.Checksum:x8} does not match computed 0x{footer.ComputeChecksum():x8}";
        }

        return null;
    }

    private static VhdFooter Checked(string path, VhdFooter footer, long offset)
    {
        if (footer.IsTapCreator && footer.CreatorVersion == 0x00000001)
        {
            throw new ImageFormatException(path, offset + VhdFooter.CreatorVersionOffset, "creator version", "tap 0.1 VHDs (little-endian bitmaps) are not supported");
        }

        if (footer.IsTapCreator && footer.CreatorVersion > VhdFooter.TapVersion)
        {
            throw new ImageFormatException(path, offset + VhdFooter.CreatorVersionOffset, "creator version", $"tap version 0x{footer.CreatorVersion:x8} is newer than 1.3");
        }

        if (footer.DiskTypeValue is not ((uint)VhdDiskType.Fixed or (uint)VhdDiskType.Dynamic or (uint)VhdDiskType.Differencing))
        {
            throw new ImageFormatException(path, offset + VhdFooter.DiskTypeOffset, "disk type", $"{footer.DiskTypeValue} is not fixed (2), dynamic (3) or differencing (4)");
        }

        if (footer.CurrentSize > long.MaxValue / 2)
        {
            throw new ImageFormatException(path, offset + VhdFooter.CurrentSizeOffset, "current size", $"{footer.CurrentSize} is implausibly large");
        }

        return footer;
    }

    public static VhdDynamicHeader ReadHeader(ImageFile file, VhdFooter footer, long length)
    {
        string path = file.Path;
        long offset = (long)footer.DataOffset;
        if (footer.DataOffset > (ulong)length || offset + VhdDynamicHeader.Size > length || offset < 0)
        {
            throw new ImageFormatException(path, VhdFooter.DataOffsetOffset, "footer data_offset", $"dynamic header at {footer.DataOffset} does not fit in the {length}-byte file");
        }

        byte[] buffer = new byte[VhdDynamicHeader.Size];
        file.ReadExactly(buffer, offset);
        VhdDynamicHeader header = VhdDynamicHeader.Read(buffer);
        if (!header.HasValidCookie)
        {
            throw new ImageFormatException(path, offset, "header cookie", $"expected \"cxsparse\", found \"{Printable(header.CookieBytes)}\"");
        }

        uint computed = header.ComputeChecksum();
        if (computed != header.Checksum)
        {
            throw new ImageFormatException(path, offset + VhdDynamicHeader.ChecksumOffset, "header checksum", $"stored 0x{header.Checksum:x8}, computed 0x{computed:x8}");
        }

        if (header.Version != VhdDynamicHeader.HeaderVersion)
        {
            throw new ImageFormatException(path, offset + VhdDynamicHeader.HeaderVersionOffset, "header version", $"expected 0x00010000, found 0x{header.Version:x8}");
        }

        // The MS spec text says 0xFFFFFFFF; libvhd requires all ones. We accept both (data-plane.md 8.2).
        if (header.DataOffset is not (ulong.MaxValue or 0xFFFFFFFFUL))
        {
            throw new ImageFormatException(path, offset + VhdDynamicHeader.DataOffsetOffset, "header data_offset", $"expected all ones, found 0x{header.DataOffset:x16}");
        }

        if (header.BlockSize < VhdLayout.SectorSize || header.BlockSize > (256u << 20) || !BitOperations.IsPow2(header.BlockSize))
        {
            throw new ImageFormatException(path, offset + VhdDynamicHeader.BlockSizeOffset, "block size", $"{header.BlockSize} is not a power of two between 512 bytes and 256 MiB");
        }

        for (int i = 0; i < header.Locators.Length; i++)
        {
            if (!VhdParentLocator.IsKnownCode(header.Locators[i].PlatformCode))
            {
                throw new ImageFormatException(path, offset + VhdDynamicHeader.LocatorsOffset + (i * VhdParentLocator.Size), $"parent locator {i}", $"unknown platform code 0x{header.Locators[i].PlatformCode:x8}");
            }
        }

        return header;
    }

    /// <summary>True for VHDs that carry blktap's batmap: creator tap, version 1.2+ (1.1 only if a valid header is found).</summary>
    public static bool HasBatmap(VhdFooter footer) => footer.IsDynamic && footer.IsTapCreator && footer.CreatorVersion >= 0x00010001;

    /// <summary>
    /// Where the metadata ends, rounded up to a sector: the dynamic header, the BAT at its full max_bat_size, the batmap
    /// and every parent locator's data. No data block may start before it.
    /// </summary>
    public static long EndOfMetadata(VhdFooter footer, VhdDynamicHeader header, VhdBatmapHeader? batmap)
    {
        long end = Math.Max((long)footer.DataOffset + VhdDynamicHeader.Size, (long)header.TableOffset + (VhdLayout.BatSectors(header.MaxTableEntries) * VhdLayout.SectorSize));
        if (batmap is not null)
        {
            end = Math.Max(end, (long)batmap.BatmapOffset + ((long)batmap.BatmapSize * VhdLayout.SectorSize));
        }

        foreach (VhdParentLocator loc in header.Locators)
        {
            if (loc.PlatformCode != VhdParentLocator.None && loc.DataOffset != 0)
            {
                end = Math.Max(end, (long)loc.DataOffset + loc.DataSpaceBytes);
            }
        }

        return VhdEditor.RoundUpToSector(end);
    }

    /// <summary>The batmap header, or null if the VHD has none or it is invalid (then it is rebuilt at close rather than refused).</summary>
    public static VhdBatmapHeader? ReadBatmapHeader(ImageFile file, VhdFooter footer, VhdDynamicHeader header, long length)
    {
        if (!HasBatmap(footer))
        {
            return null;
        }

        long offset = (long)VhdLayout.BatmapHeaderOffset(header.TableOffset, header.MaxTableEntries);
        if (offset + VhdBatmapHeader.Size > length)
        {
            return null;
        }

        byte[] buffer = new byte[VhdBatmapHeader.Size];
        file.ReadExactly(buffer, offset);
        VhdBatmapHeader batmap = VhdBatmapHeader.Read(buffer);
        if (!batmap.HasValidCookie || batmap.Version > VhdBatmapHeader.CurrentVersion || batmap.BatmapOffset != (ulong)offset + VhdBatmapHeader.Size
            || batmap.BatmapSize == 0 || batmap.BatmapSize > (header.MaxTableEntries / 8 / 512) + 2)
        {
            return null;
        }

        return batmap;
    }

    /// <summary>Loads "block is full" bits from the batmap if its checksum holds; bits for unallocated blocks are ignored.</summary>
    public static bool LoadBatmap(ImageFile file, VhdFooter footer, VhdBatmapHeader batmap, uint[] bat, ulong[] full, int readableSectors)
    {
        if (readableSectors <= 0)
        {
            return false;
        }

        byte[] map = new byte[(long)batmap.BatmapSize * VhdLayout.SectorSize];
        int n = file.Read(map.AsSpan(0, readableSectors * VhdLayout.SectorSize), (long)batmap.BatmapOffset);
        if (n < readableSectors * VhdLayout.SectorSize)
        {
            return false;
        }

        int summed = Math.Min(VhdBatmapHeader.ChecksummedMapBytes(footer.CurrentSize), map.Length);
        uint checksum = VhdChecksum.ComputeBatmap(map.AsSpan(0, summed), signedBytes: batmap.Version < VhdBatmapHeader.CurrentVersion);
        if (checksum != batmap.Checksum)
        {
            return false;
        }

        int limitBits = Math.Min(bat.Length, readableSectors * VhdLayout.SectorSize * 8);
        for (int b = 0; b < limitBits; b++)
        {
            if ((map[b >> 3] & (0x80 >> (b & 7))) != 0 && bat[b] != VhdLayout.Unallocated)
            {
                full[b >> 6] |= 1UL << (b & 63);
            }
        }

        return true;
    }

    /// <summary>Resolves the parent through the locators in slot order; returns null with the list of what was tried.</summary>
    public static string? ResolveParent(string childPath, string childCanonical, VhdDynamicHeader header, out string tried)
    {
        var attempts = new StringBuilder();
        using ImageFile file = ImageFile.Open(childPath, readOnly: true, direct: false);
        long length = file.Length;
        foreach (VhdParentLocator loc in header.Locators)
        {
            if (loc.PlatformCode is not (VhdParentLocator.MacX or VhdParentLocator.W2ku or VhdParentLocator.W2ru))
            {
                continue;
            }

            if (loc.DataLength == 0 || loc.DataLength > 4096 || (long)loc.DataOffset + loc.DataLength > length)
            {
                attempts.Append($"{VhdParentLocator.CodeName(loc.PlatformCode)} at {loc.DataOffset} (unreadable); ");
                continue;
            }

            byte[] payload = new byte[loc.DataLength];
            file.ReadExactly(payload, (long)loc.DataOffset);
            string? name = VhdParentPath.Decode(loc.PlatformCode, payload);
            if (name is null)
            {
                attempts.Append($"{VhdParentLocator.CodeName(loc.PlatformCode)} (undecodable); ");
                continue;
            }

            string? found = VhdParentPath.Find(childCanonical, name);
            if (found is not null)
            {
                tried = attempts.ToString();
                return found;
            }

            attempts.Append($"{VhdParentLocator.CodeName(loc.PlatformCode)} '{name}'; ");
        }

        tried = attempts.Length == 0 ? "none" : attempts.ToString().TrimEnd(' ', ';');
        return null;
    }

    private static string Printable(byte[] bytes)
    {
        var sb = new StringBuilder();
        foreach (byte b in bytes)
        {
            sb.Append(b is >= 0x20 and < 0x7F ? (char)b : '.');
        }

        return sb.ToString();
    }

    internal static ErrnoIOException ShortFile(string path, long offset) => new(Errno.EIO, path, $"read past end of file at offset {offset}");
}
