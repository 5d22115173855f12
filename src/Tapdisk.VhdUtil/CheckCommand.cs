using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"vhd-util check": the reference's structural checks with its messages and exit codes (data-plane.md 1.14).</summary>
internal static class CheckCommand
{
    public static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Out.Write(Usage.Check);
            return Errno.EINVAL;
        }

        var opt = new GetOpt(args, "n:iItBpbsh");
        string? name = null;
        var flags = new Flags();
        bool parents = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'i': flags.IgnorePrimary = true; break;
                case 'I': flags.IgnoreParentUuid = true; break;
                case 't': flags.IgnoreTimestamps = true; break;
                case 'B': flags.NoOverlap = true; break;
                case 'p': parents = true; break;
                case 'b': case 's': break;
                case 'h': Console.Out.Write(Usage.Check); return 0;
                default: Console.Out.Write(Usage.Check); return Errno.EINVAL;
            }
        }

        if (name is null)
        {
            Console.Out.Write(Usage.Check);
            return Errno.EINVAL;
        }

        string? current = name;
        var seen = new HashSet<string>();
        while (current is not null)
        {
            if (!File.Exists(current))
            {
                Console.Out.WriteLine($"cannot stat {current}: {Errno.ENOENT}");
                return Errno.ENOENT;
            }

            if (!seen.Add(ImageOpener.CanonicalPath(current)))
            {
                Console.Out.WriteLine($"{current}: loop in parent chain");
                return Errno.ELOOP;
            }

            VhdFileInfo info = VhdFileInfo.Read(current);
            (string? problem, int errno, string? parent) = Check(info, flags);
            if (problem is not null)
            {
                Console.Out.WriteLine(problem);
                Console.Out.WriteLine($"{current} appears invalid; dumping metadata");
                Console.Out.Write(VhdPrinter.All(info));
                return errno;
            }

            if (info.Footer!.IsDynamic)
            {
                Console.Out.WriteLine($"{current} is valid");
            }

            current = parents ? parent : null;
        }

        return 0;
    }

    private static (string? Problem, int Errno, string? Parent) Check(VhdFileInfo info, Flags flags)
    {
        if (info.Length < VhdFooter.Size || info.Primary is null)
        {
            return ("primary footer invalid: file too short", Errno.EINVAL, null);
        }

        string? primary = FooterProblem(info.Primary, flags);
        if (primary is not null && !flags.IgnorePrimary)
        {
            return ($"primary footer invalid: {primary}", Errno.EINVAL, null);
        }

        VhdFooter? footer = info.Footer;
        if (footer is null)
        {
            return ($"primary footer invalid: {primary}", Errno.EINVAL, null);
        }

        if (!footer.IsDynamic)
        {
            return (null, 0, null);
        }

        string? backup = FooterProblem(info.Backup!, flags);
        if (backup is not null)
        {
            return ($"backup footer invalid: {backup}", Errno.EINVAL, null);
        }

        if (primary is null && !Same(info.Primary, info.Backup!))
        {
            return ("primary and backup footers do not match", Errno.EINVAL, null);
        }

        VhdDynamicHeader? header = info.Header;
        string? headerProblem = header is null ? "header unreadable" : HeaderProblem(header, footer, info.Length);
        if (headerProblem is not null)
        {
            return ($"header is invalid: {headerProblem}", Errno.EINVAL, null);
        }

        string? batProblem = BatProblem(info, header!, flags);
        if (batProblem is not null)
        {
            return (batProblem, Errno.EINVAL, null);
        }

        if (info.Batmap is not null)
        {
            if (info.Batmap.Version > VhdBatmapHeader.CurrentVersion)
            {
                return ("batmap is invalid: invalid version", Errno.EINVAL, null);
            }

            if (info.ComputedBatmapChecksum() != info.Batmap.Checksum)
            {
                return ("batmap is invalid: invalid checksum", Errno.EINVAL, null);
            }

            for (int b = 0; b < info.Bat.Length; b++)
            {
                if (info.Bat[b] == VhdLayout.Unallocated && info.BatmapBit(b))
                {
                    return ($"batmap shows unallocated block {b} full", Errno.EINVAL, null);
                }
            }
        }

        if (footer.DiskType != VhdDiskType.Differencing)
        {
            return (null, 0, null);
        }

        string canonical = ImageOpener.CanonicalPath(info.Path);
        string? parent = VhdMetadataReader.ResolveParent(info.Path, canonical, header!, out _);
        if (parent is null)
        {
            return ($"error checking parent of {info.Path}: parent not found", Errno.ENOENT, null);
        }

        if (!VhdUuid.IsNull(header!.ParentUuid) && !flags.IgnoreParentUuid)
        {
            VhdFileInfo parentInfo = VhdFileInfo.Read(parent);
            if (parentInfo.Footer is null || !parentInfo.Footer.UniqueId.AsSpan().SequenceEqual(header.ParentUuid))
            {
                return ($"parent uuid mismatch: {info.Path} expects {VhdUuid.Format(header.ParentUuid)}, {parent} is {(parentInfo.Footer is null ? "unreadable" : VhdUuid.Format(parentInfo.Footer.UniqueId))}", Errno.EINVAL, null);
            }
        }

        return (null, 0, VhdUuid.IsNull(header.ParentUuid) ? null : parent);
    }

    private static string? FooterProblem(VhdFooter f, Flags flags)
    {
        if (!f.HasValidCookie)
        {
            return "invalid cookie";
        }

        if (!f.HasValidChecksum)
        {
            return "invalid checksum";
        }

        if ((f.Features & ~3u) != 0 || (f.Features & 2) == 0)
        {
            return "invalid 'reserved' feature";
        }

        if (f.FileFormatVersion != VhdFooter.FormatVersion)
        {
            return "invalid file version";
        }

        if (f.DiskTypeValue == (uint)VhdDiskType.Fixed ? f.DataOffset != VhdFooter.FixedDataOffset : f.DataOffset == VhdFooter.FixedDataOffset)
        {
            return "invalid data offset";
        }

        if (!flags.IgnoreTimestamps && f.Timestamp > VhdFooter.TimestampNow() + 1800)
        {
            return "creation time in future";
        }

        if (f.IsTapCreator && f.CreatorVersion > VhdFooter.TapVersion)
        {
            return "unsupported tap creator version";
        }

        if (VhdGeometry.ForSize((long)f.CurrentSize).Encoded < f.Geometry)
        {
            return "geometry too large";
        }

        if (f.DiskTypeValue is not (2 or 3 or 4))
        {
            return "invalid type";
        }

        if (f.SavedState > 1)
        {
            return "invalid 'saved' state";
        }

        if (f.Hidden > 1)
        {
            return "invalid 'hidden' state";
        }

        if (f.Reserved.AsSpan().ContainsAnyExcept((byte)0))
        {
            return "invalid 'reserved' bits";
        }

        if (VhdUuid.IsNull(f.UniqueId))
        {
            return "invalid uuid";
        }

        return null;
    }

    private static bool Same(VhdFooter a, VhdFooter b)
    {
        byte[] x = new byte[VhdFooter.Size], y = new byte[VhdFooter.Size];
        a.Write(x);
        b.Write(y);
        if (x.AsSpan().SequenceEqual(y))
        {
            return true;
        }

        // Legacy: early td-util set "hidden" in one copy only (data-plane.md 1.3).
        x[85] = y[85] = 0;
        return a.IsTapCreator && x.AsSpan(0, 64).SequenceEqual(y.AsSpan(0, 64)) && x.AsSpan(68).SequenceEqual(y.AsSpan(68));
    }

    private static string? HeaderProblem(VhdDynamicHeader h, VhdFooter f, long length)
    {
        if (!h.HasValidCookie)
        {
            return "invalid cookie";
        }

        if (h.ComputeChecksum() != h.Checksum)
        {
            return "invalid checksum";
        }

        if (h.Version != VhdDynamicHeader.HeaderVersion)
        {
            return "invalid header version";
        }

        if (h.DataOffset != ulong.MaxValue)
        {
            return "invalid data offset";
        }

        if (h.BlockSize == 0 || h.BlockSize > VhdLayout.BlockSize || (h.BlockSize & (h.BlockSize - 1)) != 0)
        {
            return "invalid block size";
        }

        if (h.Reserved1 != 0 || h.Reserved2.AsSpan().ContainsAnyExcept((byte)0))
        {
            return "invalid 'reserved' bits";
        }

        if (h.TableOffset == 0 || h.TableOffset % VhdLayout.SectorSize != 0 || h.TableOffset + ((ulong)h.MaxTableEntries * 4) > (ulong)length)
        {
            return "invalid table offset";
        }

        if ((ulong)VhdLayout.EntriesFor(f.CurrentSize, h.BlockSize) > h.MaxTableEntries)
        {
            return "max bat size too small";
        }

        foreach (VhdParentLocator loc in h.Locators)
        {
            if (!VhdParentLocator.IsKnownCode(loc.PlatformCode))
            {
                return "invalid parent locator code";
            }
        }

        return null;
    }

    private static string? BatProblem(VhdFileInfo info, VhdDynamicHeader h, Flags flags)
    {
        long bitmapSectors = VhdLayout.BitmapSectors(h.BlockSize);
        long blockSectors = bitmapSectors + (h.BlockSize / VhdLayout.SectorSize);
        long metadataEnd = (long)h.TableOffset + (VhdLayout.BatSectors(h.MaxTableEntries) * VhdLayout.SectorSize);
        if (info.Batmap is not null)
        {
            metadataEnd = Math.Max(metadataEnd, (long)info.Batmap.BatmapOffset + (info.Batmap.BatmapSize * VhdLayout.SectorSize));
        }

        long footerSector = (info.Length - VhdFooter.Size) / VhdLayout.SectorSize;
        var used = new List<(uint Entry, int Block)>();
        for (int b = 0; b < info.Bat.Length; b++)
        {
            uint e = info.Bat[b];
            if (e == VhdLayout.Unallocated)
            {
                continue;
            }

            if ((long)e * VhdLayout.SectorSize < metadataEnd)
            {
                return $"block {b} (offset 0x{e:x}) clobbers headers";
            }

            if (e + blockSectors > footerSector)
            {
                return $"block {b} (offset 0x{e:x}) clobbers footer";
            }

            used.Add((e, b));
        }

        if (!flags.NoOverlap)
        {
            used.Sort((a, b) => a.Entry != b.Entry ? a.Entry.CompareTo(b.Entry) : a.Block.CompareTo(b.Block));
            for (int i = 1; i < used.Count; i++)
            {
                if (used[i - 1].Entry + blockSectors > used[i].Entry)
                {
                    return $"block {used[i - 1].Block} (offset 0x{used[i - 1].Entry:x}) clobbers block {used[i].Block} (offset 0x{used[i].Entry:x})";
                }
            }
        }

        return null;
    }

    private sealed class Flags
    {
        public bool IgnorePrimary { get; set; }

        public bool IgnoreParentUuid { get; set; }

        public bool IgnoreTimestamps { get; set; }

        public bool NoOverlap { get; set; }
    }
}
