using System.Globalization;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

internal static class Commands
{
    private const long MiB = 1024 * 1024;

    public static int Create(string[] args)
    {
        var opt = new GetOpt(args, "n:s:rS:h");
        string? name = null;
        long? sizeMb = null;
        long maxMb = 0;
        bool fixedDisk = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                // Deliberately stricter than blktap: its strtoull turns "-s abc" into a silent 0 MiB disk; a size
                // that is not a number is a usage error here.
                case 's': sizeMb = ParseSize(arg); break;
                case 'S': maxMb = ParseSize(arg) ?? -1; break;
                case 'r': fixedDisk = true; break;
                default: return UsageError(Usage.Create);
            }
        }

        if (name is null || sizeMb is null || sizeMb < 0 || maxMb < 0)
        {
            return UsageError(Usage.Create);
        }

        // vhd-util rounds the size up to whole 2 MiB blocks.
        long size = (sizeMb.Value + 1) / 2 * 2 * MiB;
        if (fixedDisk)
        {
            VhdCreator.CreateFixed(name, size);
        }
        else
        {
            VhdCreator.CreateDynamic(name, size, maxMb * MiB);
        }

        return 0;
    }

    public static int Snapshot(string[] args)
    {
        if (args.Length == 0)
        {
            return UsageError(Usage.Snapshot);
        }

        var opt = new GetOpt(args, "n:p:l:mS:eh");
        string? name = null, parent = null;
        int limit = 0;
        bool raw = false, linkEmpty = false;
        long maxMb = 0;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'p': parent = arg; break;
                case 'l': limit = int.TryParse(arg, CultureInfo.InvariantCulture, out int l) ? l : -1; break;
                case 'm': raw = true; break;
                case 'e': linkEmpty = true; break;
                case 'S': maxMb = ParseSize(arg) ?? -1; break;
                case 'h': Console.Out.Write(Usage.Snapshot); return 0;
                default: return UsageError(Usage.Snapshot);
            }
        }

        if (name is null || parent is null || limit < 0 || maxMb < 0)
        {
            return UsageError(Usage.Snapshot);
        }

        if (!File.Exists(parent))
        {
            return Errno.ENOENT;
        }

        string backing = ImageOpener.CanonicalPath(parent);
        if (!raw && !linkEmpty)
        {
            // Snapshot the first non-empty ancestor: empty differencing links add depth and nothing else.
            while (true)
            {
                using VhdImage image = VhdImage.OpenSingle(backing, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
                if (image.DiskType != VhdDiskType.Differencing || image.AllocatedBlockCount != 0)
                {
                    break;
                }

                string? up = VhdMetadataReader.ResolveParent(backing, backing, image.Header!, out _);
                if (up is null)
                {
                    break;
                }

                backing = up;
            }
        }

        if (limit > 0 && !raw && ChainDepth(backing) + 1 > limit)
        {
            return Errno.ENOSPC;
        }

        VhdCreator.CreateDifferencing(name, backing, raw, maxMb * MiB);
        return 0;
    }

    public static int Query(string[] args)
    {
        if (args.Length == 0)
        {
            return UsageError(Usage.Query);
        }

        var opt = new GetOpt(args, "n:vspfmdSauh");
        string? name = null;
        bool v = false, s = false, p = false, f = false, m = false, d = false, maxSize = false, a = false, unresolved = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'v': v = true; break;
                case 's': s = true; break;
                case 'p': p = true; break;
                case 'f': f = true; break;
                case 'm': m = true; break;
                case 'd': d = true; break;
                case 'S': maxSize = true; break;
                case 'a': a = true; break;
                case 'u': unresolved = true; break;
                case 'h': Console.Out.Write(Usage.Query); return 0;
                default: return UsageError(Usage.Query);
            }
        }

        if (name is null)
        {
            return UsageError(Usage.Query);
        }

        VhdImage image;
        try
        {
            image = VhdImage.OpenSingle(name, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException)
        {
            int errno = StorageErrors.ToErrno(e);
            Console.Out.WriteLine($"error opening {name}: -{errno}");
            return errno;
        }

        using (image)
        {
            VhdFooter footer = image.Footer;
            if (v)
            {
                Console.Out.WriteLine((footer.CurrentSize >> 20).ToString(CultureInfo.InvariantCulture));
            }

            if (s)
            {
                Console.Out.WriteLine((image.EndOfDataBytes + VhdFooter.Size).ToString(CultureInfo.InvariantCulture));
            }

            if (p)
            {
                if (image.DiskType != VhdDiskType.Differencing)
                {
                    Console.Out.WriteLine($"{name} has no parent");
                }
                else if (unresolved)
                {
                    VhdFileInfo info = VhdFileInfo.Read(name);
                    Console.Out.WriteLine(Array.Find(info.LocatorNames, n => n is not null) ?? string.Empty);
                }
                else
                {
                    string canonical = ImageOpener.CanonicalPath(name);
                    string? parent = VhdMetadataReader.ResolveParent(name, canonical, image.Header!, out _);
                    if (parent is null)
                    {
                        Console.Out.WriteLine("query failed");
                        return Errno.ENOENT;
                    }

                    Console.Out.WriteLine(parent);
                }
            }

            if (f)
            {
                Console.Out.WriteLine($"hidden: {footer.Hidden}");
            }

            if (m)
            {
                Console.Out.WriteLine($"marker: {image.Marker}");
            }

            if (d)
            {
                int depth = ChainDepth(ImageOpener.CanonicalPath(name));
                if (depth < 0)
                {
                    Console.Out.WriteLine($"error checking chain depth: -{Errno.ENOENT}");
                    return Errno.ENOENT;
                }

                Console.Out.WriteLine($"chain depth: {depth}");
            }

            if (a)
            {
                Console.Out.WriteLine(image.AllocatedBlockCount.ToString(CultureInfo.InvariantCulture));
            }

            if (maxSize)
            {
                long max = image.Header is null ? (long)(footer.CurrentSize >> 20) : image.Header.MaxTableEntries * (long)(image.Header.BlockSize >> 20);
                Console.Out.WriteLine(max.ToString(CultureInfo.InvariantCulture));
            }
        }

        return 0;
    }

    public static int Set(string[] args)
    {
        var opt = new GetOpt(args, "n:f:v:h");
        string? name = null, field = null;
        int value = -1;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'f': field = arg; break;
                case 'v': value = int.TryParse(arg, CultureInfo.InvariantCulture, out int v) && v is >= 0 and <= 255 ? v : -1; break;
                default: return UsageError(Usage.Set);
            }
        }

        if (name is null || field is null || value < 0)
        {
            return UsageError(Usage.Set);
        }

        if (field is not ("hidden" or "marker"))
        {
            Console.Out.Write($"invalid field {field}\n" + Usage.Set);
            return Errno.EINVAL;
        }

        VhdEditor vhd;
        try
        {
            vhd = VhdEditor.Open(name, readOnly: false);
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            // As the reference's vhd_open failure reads for query, modify and copy (reference-transcript.md 4, 10).
            int errno = StorageErrors.ToErrno(e);
            Console.Out.WriteLine($"error opening {name}: -{errno}");
            return errno;
        }

        using (vhd)
        {
            VhdFields.Set(vhd, field, (byte)value);
        }

        return 0;
    }

    /// <summary>Number of images from <paramref name="canonicalPath"/> down to the bottom, a raw parent included (1 for a lone VHD); -1 if a parent cannot be found.</summary>
    public static int ChainDepth(string canonicalPath)
    {
        int depth = 0;
        string? path = canonicalPath;
        var seen = new HashSet<string>();
        while (path is not null && seen.Add(path))
        {
            depth++;
            using VhdImage image = VhdImage.OpenSingle(path, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
            if (image.DiskType != VhdDiskType.Differencing)
            {
                break;
            }

            if (VhdUuid.IsNull(image.Header!.ParentUuid))
            {
                // A raw parent (null parent UUID) is a level of the chain too, as vhd_chain_depth counts it.
                depth++;
                break;
            }

            path = VhdMetadataReader.ResolveParent(path, path, image.Header, out _);
            if (path is null)
            {
                return -1;
            }
        }

        return depth;
    }

    private static long? ParseSize(string? text) => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : null;

    private static int UsageError(string usage)
    {
        Console.Out.Write(usage);
        return Errno.EINVAL;
    }
}
