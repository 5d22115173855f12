namespace Tapdisk.Storage;

/// <summary>Opens an image by driver name; given to drivers so they can open parents without knowing other drivers.</summary>
public interface IImageOpener
{
    IBlockImage Open(string driverName, string path, ImageOpenOptions options);
}
