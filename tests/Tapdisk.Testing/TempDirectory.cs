namespace Tapdisk.Testing;

/// <summary>A scratch directory on a disk-backed file system (so O_DIRECT and SEEK_HOLE behave as in production).</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        string root = Environment.GetEnvironmentVariable("TAPDISK_TEST_TMP") ?? "/var/tmp";
        Path = System.IO.Path.Combine(root, "tapdisk-test-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    private TempDirectory(string path)
    {
        Path = path;
    }

    public string Path { get; }

    /// <summary>A fresh /tmp/tdc-XXXX directory instead: short, so socket paths stay under sun_path's 108 bytes.</summary>
    public static TempDirectory ForSockets() => new(Directory.CreateTempSubdirectory("tdc-").FullName);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Teardown only: a leftover scratch directory must not fail a test.
        }
    }
}
