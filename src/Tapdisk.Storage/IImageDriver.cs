namespace Tapdisk.Storage;

/// <summary>An image format or protocol driver, registered under blktap's disk-type name.</summary>
public interface IImageDriver
{
    /// <summary>blktap's name for the disk type: "aio", "vhd".</summary>
    string Name { get; }

    string Description { get; }

    /// <summary>Opens an image; <paramref name="opener"/> opens any parents the image names.</summary>
    IBlockImage Open(string path, ImageOpenOptions options, IImageOpener opener);
}
