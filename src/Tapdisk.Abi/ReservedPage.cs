namespace Tapdisk.Abi;

/// <summary>
/// A page blktap creates (open, ftruncate to one page, mmap) and then never writes, so it stays zero for its whole life;
/// we publish it at the same moments and leave it zero too.
/// </summary>
public sealed class ReservedPage : StatsPage
{
    public ReservedPage(string path)
        : base(path, temporaryPath: null)
    {
    }
}
