using Tapdisk.Storage;

namespace Tapdisk.Drivers.Nbd;

/// <summary>blktap's "nbd" disk type: an image served by an NBD server (data-plane.md 6.6).</summary>
public sealed class NbdImageDriver : IImageDriver
{
    public const string DriverName = "nbd";

    private readonly NbdClientOptions _options;

    public NbdImageDriver(NbdClientOptions? options = null)
    {
        _options = options ?? NbdClientOptions.Default;
    }

    public string Name => DriverName;

    public string Description => "export to a NBD server";

    public IBlockImage Open(string path, ImageOpenOptions options, IImageOpener opener)
    {
        ArgumentNullException.ThrowIfNull(options);
        return NbdImage.Open(path, options, _options);
    }
}
