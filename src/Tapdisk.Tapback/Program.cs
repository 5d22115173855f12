namespace Tapdisk.Tapback;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("usage: tapback [-d] [-v] [-n]");
        return args.Length == 0 ? 1 : 2;
    }
}
