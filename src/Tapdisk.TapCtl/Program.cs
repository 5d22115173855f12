using Tapdisk.Abi;
using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>tap-ctl: blktap's tapdisk control tool, with the same commands, flags, output and exit codes.</summary>
internal static class Program
{
    /// <summary>The reference compares the command word against a fixed table; longer words are simply unknown.</summary>
    private const int MaxCommandLength = 25;

    private static int Main(string[] args)
    {
        int status = Run(args);
        Terminal.Flush();
        return status;
    }

    /// <summary>Runs one invocation and returns the exit status; errors are printed as strerror text on stderr.</summary>
    internal static int Run(string[] args)
    {
        if (args.Length == 0 || args[0].Length >= MaxCommandLength)
        {
            Terminal.Out(Usage.Main);
            return 0;
        }

        // "--debug" anywhere after COMMAND is removed and turns on the message trace (control-xen.md 1).
        string[] rest = args[1..].Where(a => a != "--debug").ToArray();
        Tapdisks.Debug = rest.Length != args.Length - 1;

        int ret;
        try
        {
            ret = args[0] switch
            {
                "list" => ListCommand.Run(rest),
                "allocate" => Commands.Allocate(rest),
                "free" => Commands.Free(rest),
                "create" => Commands.Create(rest),
                "destroy" => Commands.Destroy(rest),
                "spawn" => Commands.Spawn(rest),
                "attach" => Commands.Attach(rest),
                "detach" => Commands.Detach(rest),
                "open" => Commands.Open(rest),
                "close" => Commands.Close(rest),
                "pause" => Commands.Pause(rest),
                "unpause" => Commands.Unpause(rest),
                "stats" => Commands.Stats(rest),
                _ => Unknown(),
            };
        }
        catch (TapCtlException e) when (e.Quiet)
        {
            return e.Errno;
        }
        catch (TapCtlException e)
        {
            ret = e.Errno;
        }
        catch (ControlException e)
        {
            ret = e.Errno;
        }
        catch (ErrnoIOException e)
        {
            ret = e.Errno;
        }

        if (ret == 0)
        {
            return 0;
        }

        ret = Math.Abs(ret);
        Terminal.Error(ErrnoText.Describe(ret) + "\n");
        return ret & 0xFF;
    }

    /// <summary>No, "-h" or an unknown command: the command list on stdout and exit 0, as the reference.</summary>
    private static int Unknown()
    {
        Terminal.Out(Usage.Main);
        return 0;
    }
}
