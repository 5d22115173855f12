using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>vhd-util: blktap's VHD tool, with the same commands, flags, output and exit codes.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Out.Write(Usage.Main);
            return 0;
        }

        string[] rest = args[1..];
        try
        {
            return args[0] switch
            {
                "create" => Commands.Create(rest),
                "snapshot" => Commands.Snapshot(rest),
                "query" => Commands.Query(rest),
                "read" => ReadCommand.Run(rest),
                "set" => Commands.Set(rest),
                "check" => CheckCommand.Run(rest),
                "coalesce" => CoalesceCommand.Run(rest),
                "resize" => ResizeCommand.Resize(rest),
                "revert" => ResizeCommand.Revert(rest),
                "repair" => ResizeCommand.Repair(rest),
                "scan" => ScanCommand.Run(rest),
                "key" => KeyCommand.Run(rest),
                "fill" => FillModifyCommand.Fill(rest),
                "modify" => FillModifyCommand.Modify(rest),
                "copy" => CopyCommand.Run(rest),
                _ => Invalid(args[0]),
            };
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            int errno = StorageErrors.ToErrno(e);
            Console.Error.WriteLine($"vhd-util {args[0]}: {e.Message}");
            return errno;
        }
    }

    private static int Invalid(string command)
    {
        Console.Out.Write(Usage.Main);
        Console.Error.WriteLine($"invalid COMMAND {command}");
        return 0;
    }
}
