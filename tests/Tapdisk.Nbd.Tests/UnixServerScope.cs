using Tapdisk.Drivers.Raw;
using Tapdisk.Storage;
using Tapdisk.Testing;

namespace Tapdisk.Nbd.Tests;

/// <summary>An in-process NBD server on a UNIX socket in a scratch directory, for real peer tools.</summary>
internal sealed class UnixServerScope : IAsyncDisposable
{
    private UnixServerScope(TempDirectory directory, IBlockImage image, NbdServer server)
    {
        Directory = directory;
        Image = image;
        Listener = NbdUnixListener.Start(directory.File("nbd.sock"), server);
    }

    public TempDirectory Directory { get; }

    public IBlockImage Image { get; }

    public NbdUnixListener Listener { get; }

    public string Uri => $"nbd+unix:///?socket={Listener.Path}";

    public static UnixServerScope Start(IBlockImage image, string name = "tapdisk_client") =>
        Start(new TempDirectory(), image, name);

    public static UnixServerScope Start(TempDirectory directory, IBlockImage image, string name = "tapdisk_client") =>
        new(directory, image, new NbdServer(new NbdExport(name, "tapdisk test export", image)));

    /// <summary>A raw image file of <paramref name="sizeBytes"/> full of data (no holes), served read-write with <paramref name="options"/>.</summary>
    public static UnixServerScope StartRawFull(long sizeBytes, NbdServerOptions options)
    {
        var directory = new TempDirectory();
        string path = directory.File("disk.raw");
        using (FileStream f = File.Create(path))
        {
            byte[] block = new byte[1024 * 1024];
            Array.Fill(block, (byte)0xa5);
            for (long done = 0; done < sizeBytes; done += block.Length)
            {
                f.Write(block, 0, (int)Math.Min(block.Length, sizeBytes - done));
            }
        }

        IBlockImage image = RawImage.Open(path, ImageOpenOptions.ReadWrite);
        return new(directory, image, new NbdServer(new NbdExport("tapdisk_client", "tapdisk test export", image), options));
    }

    /// <summary>A raw image file of <paramref name="sizeBytes"/> filled by <paramref name="fill"/>, served read-write.</summary>
    public static UnixServerScope StartRaw(long sizeBytes, Action<FileStream>? fill = null)
    {
        var directory = new TempDirectory();
        string path = directory.File("disk.raw");
        using (FileStream f = File.Create(path))
        {
            f.SetLength(sizeBytes);
            fill?.Invoke(f);
        }

        return Start(directory, RawImage.Open(path, ImageOpenOptions.ReadWrite));
    }

    public static ProcessResult Run(string tool, params string[] args) =>
        ExternalTool.Run(ExternalTool.Require(tool), args, stdin: null, timeout: TimeSpan.FromMinutes(2));

    public async ValueTask DisposeAsync()
    {
        using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Listener.StopAsync(drain.Token);
        await Listener.DisposeAsync();
        await Image.DisposeAsync();
        Directory.Dispose();
    }
}
