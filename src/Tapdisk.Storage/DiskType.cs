namespace Tapdisk.Storage;

/// <summary>
/// One row of the driver table, as blktap registers its disk types: the id stats print, the name in params, and
/// either a format driver or a filter factory (blktap's DISK_TYPE_FILTER). A row with neither is a type blktap
/// knows that this build does not have: opening it answers ENOSYS, never a silent substitute.
/// </summary>
public sealed record DiskType(int Id, string Name, string Description, LayerKind Kind, IImageDriver? Driver = null, Func<IBlockImage, IBlockImage>? Filter = null)
{
    public bool IsBuilt => Kind == LayerKind.Image ? Driver is not null : Filter is not null;
}
