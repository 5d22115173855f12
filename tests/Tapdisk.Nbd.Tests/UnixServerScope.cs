using Microsoft.Extensions.Logging;
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

    public static UnixServerScope Start(TempDirectory directory, IBlockImage image, string name = "tapdisk_client", NbdServerOptions? options = null, BlockBackendOptions? backendOptions = null, ILogger? logger = null) =>
        new(directory, image, new NbdServer(new NbdExport(name, "tapdisk test export", new BlockBackend(image, backendOptions)), options, logger));

    /// <summary>A raw image file of <paramref name="sizeBytes"/> filled by <paramref name="fill"/>, served read-write.</summary>
    public static UnixServerScope StartRaw(long sizeBytes, Action<FileStream>? fill = null, NbdServerOptions? options = null, BlockBackendOptions? backendOptions = null)
    {
        var directory = new TempDirectory();
        string path = directory.File("disk.raw");
        using (FileStream f = File.Create(path))
        {
            f.SetLength(sizeBytes);
            fill?.Invoke(f);
        }

        return Start(directory, RawImage.Open(path, ImageOpenOptions.ReadWrite), options: options, backendOptions: backendOptions);
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
