namespace Tapdisk.Abi;

/// <summary>A page published at the moments blktap publishes it, whose content we do not fill (left zero).</summary>
public sealed class ReservedPage : StatsPage
{
    public ReservedPage(string path)
        : base(path, temporaryPath: null)
    {
    }
}
