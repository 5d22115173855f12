using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>blktap's "vhd" disk type: fixed, dynamic and differencing VHDs.</summary>
public sealed class VhdImageDriver : IImageDriver
{
    public const string DriverName = "vhd";

    public string Name => DriverName;

    public string Description => "Virtual Hard Disk (fixed, dynamic, differencing; blktap batmap)";

    public IBlockImage Open(string path, ImageOpenOptions options, IImageOpener opener) => VhdImage.Open(path, options, opener);
}
