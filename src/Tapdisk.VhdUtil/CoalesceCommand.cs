using System.Globalization;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>"vhd-util coalesce -n CHILD [-s] [-p]": the child's sectors into its parent (data-plane.md 3.4).</summary>
internal static class CoalesceCommand
{
    public static int Run(string[] args)
    {
        var opt = new GetOpt(args, "n:sph");
        string? name = null;
        bool percent = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 's': break; // sparse: our allocation never writes zeros it does not need, so there is nothing to skip
                case 'p': percent = true; break;
                default: return Cli.UsageError(Usage.Coalesce);
            }
        }

        if (name is null)
        {
            return Cli.UsageError(Usage.Coalesce);
        }

        if (!File.Exists(name))
        {
            Console.Out.Write($"error opening {name}: -{Errno.ENOENT}\nerror coalescing: -{Errno.ENOENT}\n");
            return Errno.ENOENT;
        }

        // -p prints the reference's "\r%6.2f%%" steps on stdout whatever it is (scripts parse them); without -p a
        // bar is drawn only when stderr is a terminal, so piped output stays exactly the reference's.
        using var bar = percent ? null : ProgressBar.ForTerminal("coalesce");
        long sectors;
        try
        {
            sectors = VhdCoalescer.Coalesce(name, (done, total) =>
            {
                if (percent)
                {
                    double pct = total == 0 ? 100 : done * 100.0 / total;
                    Console.Out.Write(string.Create(CultureInfo.InvariantCulture, $"\r{pct,6:F2}%"));
                    Console.Out.Flush();
                }

                bar?.Report(done, total);
            });
        }
        catch (VhdCoalescer.NotDifferencingException)
        {
            Console.Out.Write($"coalescing of non-differencing disks is not supported\nerror coalescing: -{Errno.EINVAL}\n");
            return Errno.EINVAL;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            int errno = StorageErrors.ToErrno(e);
            Console.Error.WriteLine(e.Message);
            Console.Out.Write($"error coalescing: -{errno}\n");
            return errno;
        }

        bar?.Dispose();
        if (percent)
        {
            Console.Out.Write('\n');
        }

        Console.Out.Write(string.Create(CultureInfo.InvariantCulture, $"Coalesced {sectors} sectors"));
        return 0;
    }
}
