namespace Tapdisk.Storage;

/// <summary>The driver table: one explicit list, looked up by blktap's disk-type names (no reflection).</summary>
public sealed class ImageOpener : IImageOpener
{
    private const int MaxChainDepth = 256;

    private readonly IImageDriver[] _drivers;

    public ImageOpener(params IImageDriver[] drivers)
    {
        _drivers = drivers;
    }

    public IReadOnlyList<IImageDriver> Drivers => _drivers;

    /// <summary>realpath(3) where the file exists, else the absolute path.</summary>
    public static string CanonicalPath(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        try
        {
            FileSystemInfo? target = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true);
            return target?.FullName ?? full;
        }
        catch (IOException)
        {
            return full;
        }
    }

    public IImageDriver? Find(string name)
    {
        foreach (IImageDriver driver in _drivers)
        {
            if (driver.Name == name)
            {
                return driver;
            }
        }

        return null;
    }

    /// <summary>Opens "type:/path" as tap-ctl passes it.</summary>
    public IBlockImage Open(ImageParams parameters, ImageOpenOptions options) => Open(parameters.DriverName, parameters.Path, options);

    public IBlockImage Open(string driverName, string path, ImageOpenOptions options)
    {
        IImageDriver driver = Find(driverName) ?? throw new ImageOpenException(path, Abi.Errno.EINVAL, $"unknown disk type '{driverName}'");

        string canonical = CanonicalPath(path);
        foreach (string child in options.ChildPaths)
        {
            if (child == canonical)
            {
                throw new ImageOpenException(path, Abi.Errno.ELOOP, $"loop in image chain: {string.Join(" -> ", options.ChildPaths)} -> {canonical}");
            }
        }

        if (options.ChildPaths.Count >= MaxChainDepth)
        {
            throw new ImageOpenException(path, Abi.Errno.ELOOP, $"image chain deeper than {MaxChainDepth} levels");
        }

        return driver.Open(path, options, this);
    }
}
