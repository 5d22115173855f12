namespace Tapdisk.Tapback;

/// <summary>
/// tapback's flags (control-xen.md Part II 5.1: -d -v -n -p -x -b, as the reference spells them) plus long options for
/// the features this build advertises and for test set-ups.
/// </summary>
internal static class CommandLine
{
    public const string DaemonChildFlag = "--daemon-child";

    public const string Usage =
        "usage: tapback [-d] [-v] [-b] [-n NAME] [-p PIDFILE] [-x DOMID]\n" +
        "       [--max-ring-page-order N (3)] [--no-flush-cache] [--discard-granularity BYTES (4096, 0 = off)]\n" +
        "       [--max-indirect-segments N (256, 0 = off)] [--physical-sector-size BYTES] [--control-dir DIR]\n" +
        "       [--backend-domid DOMID]\n" +
        "  -d  stay in the foreground      -v  debug logging\n" +
        "  -b  advertise feature-barrier=0 -n  backend type (default vbd3)\n" +
        "  -p  write a pidfile             -x  serve only this frontend domain\n";

    /// <summary>Parses arguments; null and an error message on bad usage.</summary>
    public static (TapbackOptions? Options, bool DaemonChild, string? Error) Parse(IReadOnlyList<string> args)
    {
        var options = new TapbackOptions();
        bool child = false;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            string? Next() => i + 1 < args.Count ? args[++i] : null;
            switch (arg)
            {
                case "-d": options.Foreground = true; break;
                case "-v": options.Verbose = true; break;
                case "-b": options.Barrier = false; break;
                case DaemonChildFlag: child = true; break;
                case "-n":
                    if (Next() is not { Length: > 0 } name || name.Contains('/', StringComparison.Ordinal))
                    {
                        return (null, false, "-n needs a backend type name");
                    }

                    options.BackendName = name;
                    break;
                case "-p":
                    if (Next() is not { Length: > 0 } pidFile)
                    {
                        return (null, false, "-p needs a file");
                    }

                    options.PidFile = pidFile;
                    break;
                case "-x":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint domid))
                    {
                        return (null, false, "-x needs a domain id");
                    }

                    options.FrontendDomain = domid;
                    break;
                case "--backend-domid":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint backend))
                    {
                        return (null, false, "--backend-domid needs a domain id");
                    }

                    options.BackendDomain = backend;
                    break;
                case "--max-ring-page-order":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint order) || order > FrontendRing.MaxOrder)
                    {
                        return (null, false, $"--max-ring-page-order takes 0..{FrontendRing.MaxOrder}");
                    }

                    options.MaxRingPageOrder = order;
                    break;
                case "--no-flush-cache": options.FlushCache = false; break;
                case "--discard-granularity":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint granularity) || granularity % 512 != 0)
                    {
                        return (null, false, "--discard-granularity takes a multiple of 512 bytes (0 disables discard)");
                    }

                    options.DiscardGranularity = granularity;
                    break;
                case "--max-indirect-segments":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint segments) || segments > TapbackOptions.TapdiskMaxIndirectSegments)
                    {
                        return (null, false, $"--max-indirect-segments takes 0..{TapbackOptions.TapdiskMaxIndirectSegments}, what tapdisk's ring accepts (0 disables indirect descriptors)");
                    }

                    options.MaxIndirectSegments = segments;
                    break;
                case "--physical-sector-size":
                    if (!StrictNumber.TryParseUInt32(Next(), out uint physical) || (physical != 0 && physical % 512 != 0))
                    {
                        return (null, false, "--physical-sector-size takes a multiple of 512 bytes");
                    }

                    options.PhysicalSectorSize = physical;
                    break;
                case "--control-dir":
                    if (Next() is not { Length: > 0 } dir)
                    {
                        return (null, false, "--control-dir needs a directory");
                    }

                    options.ControlDirectory = dir;
                    break;
                default:
                    return (null, false, $"unknown option '{arg}'");
            }
        }

        return (options, child, null);
    }
}
