using Tapdisk.Abi;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"vhd-util fill" and "vhd-util modify" (reference-transcript.md 10.3, 10.6).</summary>
internal static class FillModifyCommand
{
    public static int Fill(string[] args)
    {
        var opt = new GetOpt(args, "n:bf:t:Bh");
        string? name = null;
        bool quick = false;
        long? from = null, to = null;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'b': quick = true; break;
                case 'f': from = Cli.ParseNumber(arg) ?? -1; break;
                case 't': to = Cli.ParseNumber(arg) ?? -1; break;
                case 'B': break; // the 2 TiB limit is the format's: offsets past it are refused either way
                default: return Cli.UsageError(Usage.Fill);
            }
        }

        if (name is null || from < 0 || to < 0)
        {
            return Cli.UsageError(Usage.Fill);
        }

        if (!quick && (from is not null || to is not null))
        {
            Console.Out.Write("-f/-t can only be used with -b\n" + Usage.Fill);
            return Errno.EINVAL;
        }

        if (!File.Exists(name))
        {
            Console.Out.WriteLine($"error opening {name}: -{Errno.ENOENT}");
            return Errno.ENOENT;
        }

        try
        {
            // -b and the default differ only in speed in the reference; ours allocates without changing content
            // either way (VhdModifier.Fill), so both take the same path.
            VhdModifier.Fill(name, new ImageOpener(new RawImageDriver(), new VhdImageDriver()), from ?? 0, to ?? long.MaxValue);
            return 0;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            return Cli.ReportImageError(e, $"error opening {name}");
        }
    }

    public static int Modify(string[] args)
    {
        var opt = new GetOpt(args, "n:p:ms:zh");
        string? name = null, parent = null;
        bool raw = false, zero = false;
        long? size = null;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'p': parent = arg; break;
                case 'm': raw = true; break;
                case 's': size = Cli.ParseNumber(arg) ?? -1; break;
                case 'z': zero = true; break;
                default: return Cli.UsageError(Usage.Modify);
            }
        }

        if (name is null || size < 0 || (parent is null && size is null && !zero))
        {
            return Cli.UsageError(Usage.Modify);
        }

        if (!File.Exists(name))
        {
            Console.Out.WriteLine($"error opening {name}: -{Errno.ENOENT}");
            return Errno.ENOENT;
        }

        try
        {
            if (parent is not null)
            {
                try
                {
                    VhdModifier.SetParent(name, parent, raw);
                }
                catch (Exception e) when (Cli.IsImageError(e))
                {
                    int errno = StorageErrors.ToErrno(e);
                    if (errno != Errno.ENOENT)
                    {
                        Console.Error.WriteLine(e.Message);
                    }

                    Console.Out.WriteLine($"failed to set parent to '{parent}': -{errno}");
                    return errno;
                }
            }

            if (zero)
            {
                VhdModifier.Zero(name);
            }

            if (size is long bytes)
            {
                VhdModifier.SetPhysicalSize(name, bytes);
            }

            return 0;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            return Cli.ReportImageError(e, $"error modifying {name}");
        }
    }
}
