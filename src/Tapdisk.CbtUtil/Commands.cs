using Tapdisk.Abi;
using Tapdisk.Filters.Cbt;

namespace Tapdisk.CbtUtil;

/// <summary>cbt-util's four commands, with blktap's options, outputs and exit codes (reference-transcript.md 11).</summary>
internal static class Commands
{
    /// <summary>create -n F -s BYTES: a zeroed header recording the size, then a zeroed bitmap; an existing file is truncated.</summary>
    public static int Create(string[] args, TextWriter output, TextWriter error)
    {
        string? name = null;
        ulong size = 0;
        var options = new GetOpt(args, "n:s:h", "create", error);
        for (int c; (c = options.Next(out string? arg)) != -1;)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 's': size = CNumbers.StrToULL(arg!); break;
                default: return UsageError(output, Usage.Create);
            }
        }

        if (name is null || size == 0)
        {
            return UsageError(output, Usage.Create);
        }

        using LogFile log = LogFile.Create(name);
        log.WriteHeader(new CbtLogHeader { DiskSizeBytes = size });
        byte[] bitmap = LogFile.AllocateBitmap(CbtBitmap.BitmapBytes(size));
        if (!log.TryWrite(bitmap, CbtLogHeader.Size))
        {
            throw new CbtUtilException(Errno.EIO, $"Failed to write bitmap to log file {name}\n");
        }

        return 0;
    }

    /// <summary>get -n F and exactly one of -p -c -f -s -b.</summary>
    public static int Get(string[] args, Stream output, TextWriter usageOutput, TextWriter error)
    {
        string? name = null;
        var fields = new HashSet<char>();
        var options = new GetOpt(args, "n:pcfsbh", "get", error);
        for (int c; (c = options.Next(out string? arg)) != -1;)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'p' or 'c' or 'f' or 's' or 'b': fields.Add((char)c); break;
                default: return UsageError(usageOutput, Usage.Get);
            }
        }

        if (name is null || fields.Count != 1)
        {
            return UsageError(usageOutput, Usage.Get);
        }

        using LogFile log = LogFile.OpenRead(name);
        CbtLogHeader header = log.TryReadHeader() ?? throw new CbtUtilException(Errno.EIO, $"Failed to read CBT metadata from file {name}\n");
        string? text = fields.Single() switch
        {
            'p' => header.Parent.ToString("D") + "\n",
            'c' => header.Child.ToString("D") + "\n",
            'f' => header.Consistent.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n",
            's' => header.DiskSizeBytes.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n",
            _ => null,
        };
        if (text is not null)
        {
            output.Write(System.Text.Encoding.ASCII.GetBytes(text));
            return 0;
        }

        byte[] bitmap = LogFile.AllocateBitmap(CbtBitmap.BitmapBytes(header.DiskSizeBytes));
        if (!log.TryRead(bitmap, CbtLogHeader.Size))
        {
            throw new CbtUtilException(Errno.EIO, $"Failed to read bitmap from file {name}\n");
        }

        output.Write(bitmap);
        return 0;
    }

    /// <summary>
    /// set -n F and at least one of -p -c -f -s: the header is read, changed and written back whole (the pad bytes
    /// survive). Unparseable UUIDs are ignored, -f is atoi(), and a smaller -s is refused before anything is written.
    /// </summary>
    public static int Set(string[] args, TextWriter output, TextWriter error)
    {
        string? name = null;
        string? parent = null;
        string? child = null;
        string? flag = null;
        ulong size = 0;
        var options = new GetOpt(args, "n:p:c:f:s:h", "set", error);
        for (int c; (c = options.Next(out string? arg)) != -1;)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'p': parent = arg; break;
                case 'c': child = arg; break;
                case 'f': flag = arg; break;
                case 's': size = CNumbers.StrToULL(arg!); break;
                default: return UsageError(output, Usage.Set);
            }
        }

        if (name is null || (parent is null && child is null && flag is null && size == 0))
        {
            return UsageError(output, Usage.Set);
        }

        using LogFile log = LogFile.OpenReadWrite(name);
        CbtLogHeader header = log.TryReadHeader() ?? throw new CbtUtilException(Errno.EIO, $"Failed to read CBT metadata from file {name}\n");
        if (parent is not null && CNumbers.TryParseUuid(parent, out Guid p))
        {
            header = header with { Parent = p };
        }

        if (child is not null && CNumbers.TryParseUuid(child, out Guid ch))
        {
            header = header with { Child = ch };
        }

        if (flag is not null)
        {
            header = header with { Consistent = CNumbers.AtoI(flag) };
        }

        if (size != 0)
        {
            if (size < header.DiskSizeBytes)
            {
                throw new CbtUtilException(Errno.EINVAL, $"Size smaller than current file size ({header.DiskSizeBytes})\n");
            }

            if (size > header.DiskSizeBytes)
            {
                // Grow: the old bitmap, zero-extended to the new size, goes back at offset 48 before the header.
                byte[] bitmap = LogFile.AllocateBitmap(CbtBitmap.BitmapBytes(size));
                ulong oldBytes = CbtBitmap.BitmapBytes(header.DiskSizeBytes);
                if (oldBytes > (ulong)bitmap.Length || !log.TryRead(bitmap.AsSpan(0, (int)oldBytes), CbtLogHeader.Size))
                {
                    throw new CbtUtilException(Errno.EIO, $"Failed to read bitmap from file {name}\n");
                }

                if (!log.TryWrite(bitmap, CbtLogHeader.Size))
                {
                    throw new CbtUtilException(Errno.EIO, $"Failed to write bitmap to log file {name}\n");
                }

                header = header with { DiskSizeBytes = size };
            }
        }

        log.WriteHeader(header);
        return 0;
    }

    /// <summary>coalesce -p PARENT -c CHILD: ORs the parent's bitmap into the child's; the child's header is untouched.</summary>
    public static int Coalesce(string[] args, TextWriter output, TextWriter error)
    {
        string? parentName = null;
        string? childName = null;
        var options = new GetOpt(args, "p:c:h", "coalesce", error);
        for (int c; (c = options.Next(out string? arg)) != -1;)
        {
            switch (c)
            {
                case 'p': parentName = arg; break;
                case 'c': childName = arg; break;
                default: return UsageError(output, Usage.Coalesce);
            }
        }

        if (parentName is null || childName is null)
        {
            return UsageError(output, Usage.Coalesce);
        }

        using LogFile parent = LogFile.OpenRead(parentName);
        using LogFile child = LogFile.OpenReadWrite(childName);
        CbtLogHeader parentHeader = ReadHeaderForCoalesce(parent);
        CbtLogHeader childHeader = ReadHeaderForCoalesce(child);

        // blktap compares bitmap byte counts, not sizes, and prints this without a newline.
        ulong parentBytes = CbtBitmap.BitmapBytes(parentHeader.DiskSizeBytes);
        ulong childBytes = CbtBitmap.BitmapBytes(childHeader.DiskSizeBytes);
        if (parentBytes > childBytes)
        {
            throw new CbtUtilException(Errno.EINVAL, "Parent bitmap larger than child bitmap,can't coalesce");
        }

        byte[] parentBitmap = LogFile.AllocateBitmap(parentBytes);
        if (!parent.TryRead(parentBitmap, CbtLogHeader.Size))
        {
            throw new CbtUtilException(Errno.EIO, "Failed to read bitmap\n");
        }

        byte[] childBitmap = LogFile.AllocateBitmap(childBytes);
        if (!child.TryRead(childBitmap, CbtLogHeader.Size))
        {
            throw new CbtUtilException(Errno.EIO, "Failed to read bitmap\n");
        }

        for (int i = 0; i < parentBitmap.Length; i++)
        {
            childBitmap[i] |= parentBitmap[i];
        }

        if (!child.TryWrite(childBitmap, CbtLogHeader.Size))
        {
            throw new CbtUtilException(Errno.EIO, "Failed to write bitmap\n");
        }

        return 0;
    }

    private static CbtLogHeader ReadHeaderForCoalesce(LogFile log) =>
        log.TryReadHeader() ?? throw new CbtUtilException(Errno.EIO, $"Failed to read CBT metadata from file {log.Name}, error {(log.ReadError == 0 ? "Success" : Errno.Describe(log.ReadError))}\n");

    private static int UsageError(TextWriter output, string usage)
    {
        output.Write(usage);
        return Errno.EINVAL;
    }
}
