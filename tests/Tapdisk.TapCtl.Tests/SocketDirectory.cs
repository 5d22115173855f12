namespace Tapdisk.TapCtl.Tests;

/// <summary>A fresh /tmp/tdc-XXXX directory: short, so socket paths stay under sun_path's 108 bytes.</summary>
public sealed class SocketDirectory : IDisposable
{
    public SocketDirectory()
    {
        Path = Directory.CreateTempSubdirectory("tdc-").FullName;
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Teardown only.
        }
    }
}
