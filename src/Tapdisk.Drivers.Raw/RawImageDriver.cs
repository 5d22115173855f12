using Tapdisk.Storage;

namespace Tapdisk.Drivers.Raw;

/// <summary>blktap's "aio" disk type: a raw file or block device.</summary>
public sealed class RawImageDriver : IImageDriver
{
    public const string DriverName = "aio";

    public string Name => DriverName;

    public string Description => "raw file or block device (positional I/O, O_DIRECT)";

    public IBlockImage Open(string path, ImageOpenOptions options, IImageOpener opener) => RawImage.Open(path, options);
}
