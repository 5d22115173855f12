using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"vhd-util resize" and "vhd-util revert" (data-plane.md 3.4, 1.15; reference-transcript.md 10.5, 10.8).</summary>
internal static class ResizeCommand
{
    private const long MiB = 1024 * 1024;

    public static int Resize(string[] args)
    {
        var opt = new GetOpt(args, "n:s:j:fh");
        string? name = null, journal = null;
        long? sizeMb = null;
        bool fast = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 's': sizeMb = Cli.ParseNumber(arg) ?? -1; break;
                case 'j': journal = arg; break;
                case 'f': fast = true; break;
                default: return Cli.UsageError(Usage.Resize);
            }
        }

        if (name is null || sizeMb is null or < 0 || (journal is null && !fast))
        {
            return Cli.UsageError(Usage.Resize);
        }

        if (!File.Exists(name))
        {
            Console.Out.WriteLine($"error opening {name}: -{Errno.ENOENT}");
            return Errno.ENOENT;
        }

        try
        {
            if (fast)
            {
                VhdResizer.ResizeFast(name, sizeMb.Value * MiB);
            }
            else
            {
                VhdResizer.ResizeJournaled(name, sizeMb.Value * MiB, journal!, Cli.CrashHook());
            }

            return 0;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            int errno = StorageErrors.ToErrno(e);
            if (errno == Errno.ENOSYS)
            {
                Console.Out.Write($"dynamic shrink not fully implemented\nresize failed: -{errno}\n");
            }
            else if (!fast)
            {
                // The reference's -f failures are silent (exit 22); for -j the reason is worth a line.
                Console.Error.WriteLine(e.Message);
                Console.Out.WriteLine($"resize failed: -{errno}");
            }

            return errno;
        }
    }

    public static int Revert(string[] args)
    {
        var opt = new GetOpt(args, "n:j:h");
        string? name = null, journal = null;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'j': journal = arg; break;
                default: return Cli.UsageError(Usage.Revert);
            }
        }

        if (name is null || journal is null)
        {
            return Cli.UsageError(Usage.Revert);
        }

        if (!File.Exists(journal))
        {
            Console.Out.WriteLine($"opening journal failed: -{Errno.ENOENT}");
            return Errno.ENOENT;
        }

        try
        {
            VhdResizer.Revert(name, journal);
            return 0;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            return Cli.ReportImageError(e, $"reverting journal failed");
        }
    }

    public static int Repair(string[] args)
    {
        var opt = new GetOpt(args, "n:bh");
        string? name = null;
        bool backup = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'b': backup = true; break;
                default: return Cli.UsageError(Usage.Repair);
            }
        }

        if (name is null)
        {
            return Cli.UsageError(Usage.Repair);
        }

        if (!File.Exists(name))
        {
            Console.Out.WriteLine($"error opening {name}: -{Errno.ENOENT}");
            return Errno.ENOENT;
        }

        try
        {
            VhdRepair.Repair(name, backup);
            return 0;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            return Cli.ReportImageError(e, $"error opening {name}");
        }
    }
}
