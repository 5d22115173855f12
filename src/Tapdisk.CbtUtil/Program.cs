namespace Tapdisk.CbtUtil;

/// <summary>cbt-util: blktap's CBT log tool, with the same commands, options, outputs and exit codes.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        using Stream stdout = Console.OpenStandardOutput();
        using var output = new StreamWriter(stdout, new System.Text.UTF8Encoding(false)) { AutoFlush = true };
        using var error = new StreamWriter(Console.OpenStandardError(), new System.Text.UTF8Encoding(false)) { AutoFlush = true };
        return Run(args, stdout, output, error);
    }

    /// <summary>The whole tool over the three streams (tests run it in process).</summary>
    internal static int Run(string[] args, Stream stdout, TextWriter output, TextWriter error)
    {
        if (args.Length == 0)
        {
            output.Write(Usage.Main);
            return Abi.Errno.EINVAL;
        }

        string[] rest = args[1..];
        try
        {
            switch (args[0])
            {
                case "create": return Commands.Create(rest, output, error);
                case "get": return Commands.Get(rest, stdout, output, error);
                case "set": return Commands.Set(rest, output, error);
                case "coalesce": return Commands.Coalesce(rest, output, error);
                default:
                    // Exit 0 and the list on stdout, as blktap does for -h, --help and anything unknown.
                    error.Write($"Invalid COMMAND {args[0]}\n");
                    output.Write(Usage.Main);
                    return 0;
            }
        }
        catch (CbtUtilException e)
        {
            error.Write(e.Message);
            return e.ExitCode;
        }
    }
}
