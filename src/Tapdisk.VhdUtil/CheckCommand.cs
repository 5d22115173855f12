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
        bool parents = false, stats = false;
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
                case 'b': flags.CheckBitmaps = true; break;
                case 's': stats = true; break;
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
            (string? problem, int errno, string? parent, Dump dump) = Check(info, flags);
            if (problem is not null)
            {
                Console.Out.WriteLine(problem);
                Console.Out.WriteLine($"{current} appears invalid; dumping metadata");
                Console.Out.Write(DumpText(info, current, dump));
                return errno;
            }

            if (info.Footer!.IsDynamic)
            {
                if (stats)
                {
                    Console.Out.WriteLine(Stats(info));
                }
                else
                {
                    Console.Out.WriteLine($"{current} is valid");
                }
            }

            current = parents ? parent : null;
        }

        return 0;
    }

    private static (string? Problem, int Errno, string? Parent, Dump Dump) Check(VhdFileInfo info, Flags flags)
    {
        // The reference reads the last 512 bytes (511 when the size is 511 mod 512, the short-footer quirk) with
        // O_DIRECT: a file too short to seek there fails the seek, and any other unaligned size fails the read.
        long tail = info.Length % VhdLayout.SectorSize;
        Dump unreadable = info.Footer is null ? Dump.OpenFailed : Dump.Full;
        if (info.Length < VhdLayout.SectorSize - 1)
        {
            return ($"error calculating end of file: -{Errno.EINVAL}", Errno.EINVAL, null, unreadable);
        }

        if (tail != 0 && tail != VhdLayout.SectorSize - 1)
        {
            return ($"error reading primary footer: -{Errno.EINVAL}", Errno.EINVAL, null, unreadable);
        }

        if (info.Primary is null)
        {
            return ("primary footer invalid: invalid cookie", Errno.EINVAL, null, unreadable);
        }

        string? primary = FooterProblem(info.Primary, flags);
        VhdFooter? footer = info.Footer;
        if (footer is null)
        {
            return ($"primary footer invalid: {primary}", Errno.EINVAL, null, Dump.OpenFailed);
        }

        if (primary is not null && !flags.IgnorePrimary)
        {
            return ($"primary footer invalid: {primary}", Errno.EINVAL, null, Dump.Full);
        }

        if (!footer.IsDynamic)
        {
            return (null, 0, null, Dump.Full);
        }

        string? backup = FooterProblem(info.Backup!, flags);
        if (backup is not null)
        {
            return ($"backup footer invalid: {backup}", Errno.EINVAL, null, Dump.Full);
        }

        if (primary is null && !Same(info.Primary, info.Backup!))
        {
            return ("primary and backup footers do not match", Errno.EINVAL, null, Dump.Full);
        }

        VhdDynamicHeader? header = info.Header;
        string? headerProblem = header is null ? "header unreadable" : HeaderProblem(header, footer, info.Length);
        if (headerProblem is not null)
        {
            return ($"header is invalid: {headerProblem}", Errno.EINVAL, null, Dump.OpenFailed);
        }

        // The reference validates the batmap while computing the end of the metadata, before the BAT checks, and
        // reports every batmap fault (cookie, version, offset, size, checksum) with this one line.
        if (info.BatmapExpected && (info.Batmap is null || info.Batmap.Version > VhdBatmapHeader.CurrentVersion || info.ComputedBatmapChecksum() != info.Batmap.Checksum))
        {
            return ($"error calculating end of metadata: -{Errno.EINVAL}", Errno.EINVAL, null, Dump.NoBatmap);
        }

        string? batProblem = BatProblem(info, header!, flags);
        if (batProblem is not null)
        {
            return (batProblem, Errno.EINVAL, null, Dump.Full);
        }

        if (info.Batmap is not null)
        {
            for (int b = 0; b < info.Bat.Length; b++)
            {
                if (info.Bat[b] == VhdLayout.Unallocated && info.BatmapBit(b))
                {
                    return ($"batmap shows unallocated block {b} full", Errno.EINVAL, null, Dump.Full);
                }
            }
        }

        if (flags.CheckBitmaps && !flags.NoOverlap && BitmapProblem(info, header!) is string bitmapProblem)
        {
            return (bitmapProblem, Errno.EINVAL, null, Dump.Full);
        }

        if (footer.DiskType != VhdDiskType.Differencing)
        {
            return (null, 0, null, Dump.Full);
        }

        string? locatorProblem = LocatorProblem(info, header!);
        if (locatorProblem is not null)
        {
            return (locatorProblem, Errno.EINVAL, null, Dump.Full);
        }

        string canonical = ImageOpener.CanonicalPath(info.Path);
        string? parent = VhdMetadataReader.ResolveParent(info.Path, canonical, header!, out _);
        if (parent is null)
        {
            string shown = Array.Find(info.LocatorNames, n => n is not null) ?? header!.ParentName;
            return ($"error resolving {shown}: -{Errno.ENOENT}", Errno.ENOENT, null, Dump.Full);
        }

        if (!VhdUuid.IsNull(header!.ParentUuid) && !flags.IgnoreParentUuid)
        {
            VhdFileInfo parentInfo = VhdFileInfo.Read(parent);
            if (parentInfo.Footer is null || !parentInfo.Footer.UniqueId.AsSpan().SequenceEqual(header.ParentUuid))
            {
                return ($"invalid parent {parent}: invalid parent uuid", Errno.EINVAL, null, Dump.Full);
            }
        }

        return (null, 0, VhdUuid.IsNull(header.ParentUuid) ? null : parent, Dump.Full);
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

        // With -i and no usable trailing footer, blocks may run to the end of the file.
        bool primaryGood = info.Primary is { HasValidCookie: true, HasValidChecksum: true };
        long footerSector = (info.Length - (primaryGood ? VhdFooter.Size : 0)) / VhdLayout.SectorSize;
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

    /// <summary>Locator rules of data-plane.md 1.14: each used slot sane and inside the file, codes unique, names agree.</summary>
    private static string? LocatorProblem(VhdFileInfo info, VhdDynamicHeader h)
    {
        var codes = new HashSet<uint>();
        int found = 0;
        for (int i = 0; i < h.Locators.Length; i++)
        {
            VhdParentLocator loc = h.Locators[i];
            if (loc.PlatformCode == VhdParentLocator.None)
            {
                continue;
            }

            if (loc.DataOffset == 0 || loc.DataSpaceBytes == 0 || loc.DataLength == 0 || loc.DataLength > loc.DataSpaceBytes
                || (long)loc.DataOffset + loc.DataSpaceBytes > info.Length || loc.Reserved != 0)
            {
                return $"invalid parent locator {i} (offset {loc.DataOffset}, space {loc.DataSpace}, length {loc.DataLength})";
            }

            if (!codes.Add(loc.PlatformCode))
            {
                return $"duplicate parent locator code {VhdParentLocator.CodeName(loc.PlatformCode)} in locator {i}";
            }

            if (loc.PlatformCode is VhdParentLocator.MacX or VhdParentLocator.W2ku or VhdParentLocator.W2ru)
            {
                string? name = info.LocatorNames[i];
                if (name is null)
                {
                    return $"parent locator {i} cannot be decoded";
                }

                if (Path.GetFileName(name) != h.ParentName)
                {
                    return $"parent locator {i} names '{Path.GetFileName(name)}' but the header's parent name is '{h.ParentName}'";
                }

                found++;
            }
        }

        return found == 0 ? "no parent locator found" : null;
    }

    /// <summary>"-b": a sector whose bitmap bit is clear must hold zeros (its data is not the guest's).</summary>
    private static string? BitmapProblem(VhdFileInfo info, VhdDynamicHeader h)
    {
        int spb = (int)(h.BlockSize / VhdLayout.SectorSize);
        int bitmapSectors = VhdLayout.BitmapSectors(h.BlockSize);
        using ImageFile file = ImageFile.Open(info.Path, readOnly: true, direct: false);
        byte[] bitmap = new byte[bitmapSectors * VhdLayout.SectorSize];
        byte[] data = new byte[h.BlockSize];
        for (int b = 0; b < info.Bat.Length; b++)
        {
            if (info.Bat[b] == VhdLayout.Unallocated || info.BatmapBit(b))
            {
                continue;
            }

            file.ReadExactly(bitmap, (long)info.Bat[b] * VhdLayout.SectorSize);
            if (VhdBitmap.IsFull(bitmap, spb))
            {
                continue;
            }

            int n = file.Read(data, ((long)info.Bat[b] + bitmapSectors) * VhdLayout.SectorSize);
            for (int s = 0; s < spb && (s * VhdLayout.SectorSize) < n; s++)
            {
                if (!VhdBitmap.Test(bitmap, s) && data.AsSpan(s * VhdLayout.SectorSize, Math.Min(VhdLayout.SectorSize, n - (s * VhdLayout.SectorSize))).ContainsAnyExcept((byte)0))
                {
                    return $"block {b} (offset 0x{info.Bat[b]:x}): sector {s} holds data but its bitmap bit is clear";
                }
            }
        }

        return null;
    }

    /// <summary>"-s": sectors in allocated blocks and sectors whose bitmap bit is set.</summary>
    private static string Stats(VhdFileInfo info)
    {
        VhdDynamicHeader h = info.Header!;
        int spb = (int)(h.BlockSize / VhdLayout.SectorSize);
        long allocated = 0, written = 0;
        using ImageFile file = ImageFile.Open(info.Path, readOnly: true, direct: false);
        byte[] bitmap = new byte[VhdLayout.BitmapSectors(h.BlockSize) * VhdLayout.SectorSize];
        for (int b = 0; b < info.Bat.Length; b++)
        {
            if (info.Bat[b] == VhdLayout.Unallocated)
            {
                continue;
            }

            allocated += spb;
            file.ReadExactly(bitmap, (long)info.Bat[b] * VhdLayout.SectorSize);
            for (int s = 0; s < spb; s++)
            {
                written += VhdBitmap.Test(bitmap, s) ? 1 : 0;
            }
        }

        double pct = allocated == 0 ? 0 : written * 100.0 / allocated;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{info.Path}: secs allocated: 0x{allocated:x} secs written: 0x{written:x} ({pct:F2}%)");
    }

    private static string DumpText(VhdFileInfo info, string name, Dump dump)
    {
        switch (dump)
        {
            case Dump.OpenFailed:
                return VhdPrinter.OpenFailed(name, Errno.EINVAL, info);

            case Dump.NoBatmap:
                {
                    var sb = new System.Text.StringBuilder();
                    sb.Append(VhdPrinter.Footer(info.Footer!)).Append(VhdPrinter.Header(info.Header!));
                    if (info.Footer!.DiskTypeValue == (uint)VhdDiskType.Differencing)
                    {
                        sb.Append(VhdPrinter.Locators(info));
                    }

                    return sb.Append("failed to get batmap header\n").ToString();
                }

            default:
                return VhdPrinter.All(info);
        }
    }

    /// <summary>Which metadata dump follows a failure, as the reference prints it.</summary>
    private enum Dump
    {
        Full,
        OpenFailed,
        NoBatmap,
    }

    private sealed class Flags
    {
        public bool CheckBitmaps { get; set; }

        public bool IgnorePrimary { get; set; }

        public bool IgnoreParentUuid { get; set; }

        public bool IgnoreTimestamps { get; set; }

        public bool NoOverlap { get; set; }
    }
}
