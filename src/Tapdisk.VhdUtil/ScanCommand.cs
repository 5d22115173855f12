using System.Globalization;
using System.Text;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"vhd-util scan": one line per VHD for the storage manager (reference-transcript.md 10.1).</summary>
internal static class ScanCommand
{
    public static int Run(string[] args)
    {
        var opt = new GetOpt(args, "m:fcl:pavMh");
        string? glob = null, volumeGroup = null;
        bool continueOnError = false, pretty = false, ancestors = false, verbose = false, markers = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'm': glob = arg; break;
                case 'f': break; // "fast": same output on files
                case 'c': continueOnError = true; break;
                case 'l': volumeGroup = arg; break;
                case 'p': pretty = true; break;
                case 'a': ancestors = true; break;
                case 'v': verbose = true; break;
                case 'M': markers = true; break;
                case 'h': Console.Out.Write(Usage.Scan); return 0;
                default: return Cli.UsageError(Usage.Scan);
            }
        }

        if (volumeGroup is not null)
        {
            // No LVM support: report it as the reference does when the volume group cannot be scanned.
            Console.Error.Write($"lvm_scan_vg failed -{Errno.EINVAL}\nscan failed: -{Errno.EINVAL}. Check syslog for details\n");
            return Errno.EINVAL;
        }

        List<string> targets = glob is not null ? Expand(glob) : opt.Operands;
        if (glob is null && targets.Count == 0)
        {
            return Cli.UsageError(Usage.Scan);
        }

        var entries = new List<Entry>();
        var byPath = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (string target in targets)
        {
            string? current = target;
            while (current is not null)
            {
                string key = File.Exists(current) ? ImageOpener.CanonicalPath(current) : current;
                if (byPath.ContainsKey(key))
                {
                    break;
                }

                Entry entry = Scan(current, key, verbose, markers);
                if (entry.Error is not null)
                {
                    // Without -c the first failure ends the scan with its errno; a missing file also gets the
                    // reference's stderr line.
                    Console.Out.WriteLine(entry.Error);
                    if (continueOnError)
                    {
                        break;
                    }

                    if (entry.Errno == Errno.ENOENT)
                    {
                        Console.Error.WriteLine($"scan failed: -{entry.Errno}. Check syslog for details");
                    }

                    return entry.Errno;
                }

                entries.Add(entry);
                byPath[key] = entry;
                if (!pretty)
                {
                    Console.Out.WriteLine(entry.Line);
                }

                current = ancestors ? entry.ParentPath : null;
            }
        }

        if (pretty)
        {
            var output = new StringBuilder();
            var seen = new HashSet<Entry>();
            foreach (Entry e in entries)
            {
                if (e.ParentPath is null || !byPath.ContainsKey(e.ParentPath))
                {
                    PrintTree(output, e, entries, 0, seen);
                }
            }

            Console.Out.Write(output.ToString());
        }

        return 0;
    }

    private static void PrintTree(StringBuilder output, Entry node, List<Entry> all, int depth, HashSet<Entry> seen)
    {
        if (!seen.Add(node))
        {
            return;
        }

        output.Append(' ', depth * 3).Append(node.Line).Append('\n');
        foreach (Entry child in all)
        {
            if (child.ParentPath == node.Key)
            {
                PrintTree(output, child, all, depth + 1, seen);
            }
        }
    }

    private static Entry Scan(string name, string key, bool verbose, bool markers)
    {
        string shown = verbose ? name : Path.GetFileName(name);
        if (!File.Exists(name))
        {
            return Entry.Failed(key, $"vhd={shown} scan-error=-{Errno.ENOENT} error-message='failure scanning target'", Errno.ENOENT);
        }

        try
        {
            using VhdEditor vhd = VhdEditor.Open(name, readOnly: true, strict: false, allowPoisoned: true);
            VhdFooter f = vhd.Footer;
            long size = vhd.IsDynamic ? vhd.EndOfDataBytes + VhdFooter.Size : vhd.File.Length;
            string? parentPath = null;
            string parentShown = "none";
            if (f.DiskType == VhdDiskType.Differencing)
            {
                parentPath = VhdMetadataReader.ResolveParent(name, key, vhd.Header!, out _);
                parentShown = parentPath is null ? vhd.Header!.ParentName : verbose ? parentPath : Path.GetFileName(parentPath);
            }

            var line = new StringBuilder();
            line.Append(CultureInfo.InvariantCulture, $"vhd={shown} capacity={f.CurrentSize} size={size} hidden={f.Hidden}");
            if (markers)
            {
                byte[] record = new byte[VhdExtendedAttributes.KeyhashRecordSize];
                vhd.ReadKeyhashRecord(record);
                string keyhash = record[0] == 1 ? Convert.ToHexStringLower(record.AsSpan(33, 32)) : string.Empty;
                line.Append(CultureInfo.InvariantCulture, $" marker={vhd.Marker} keyhash={keyhash}");
            }

            line.Append(" parent=").Append(parentShown);
            return new Entry(key, line.ToString(), parentPath, null, 0);
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            int errno = StorageErrors.ToErrno(e);
            return Entry.Failed(key, $"vhd={shown} scan-error=-{errno} error-message='opening file'", errno);
        }
    }

    /// <summary>glob(3) over one directory level: the pattern's directory as given, matches in byte order.</summary>
    private static List<string> Expand(string glob)
    {
        string? dir = Path.GetDirectoryName(glob);
        string pattern = Path.GetFileName(glob);
        string searchDir = string.IsNullOrEmpty(dir) ? "." : dir;
        if (!Directory.Exists(searchDir))
        {
            return [];
        }

        var found = new List<string>();
        foreach (string file in Directory.EnumerateFileSystemEntries(searchDir, pattern))
        {
            found.Add(string.IsNullOrEmpty(dir) ? Path.GetFileName(file) : Path.Combine(dir, Path.GetFileName(file)));
        }

        found.Sort(StringComparer.Ordinal);
        return found;
    }

    private sealed record Entry(string Key, string Line, string? ParentPath, string? Error, int Errno)
    {
        public static Entry Failed(string key, string error, int errno) => new(key, string.Empty, null, error, errno);
    }
}
