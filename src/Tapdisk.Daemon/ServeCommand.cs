using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Logging;
using Tapdisk.Nbd;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>"tapdisk serve": one image on one NBD UNIX socket, for users who just want an NBD server for VHD.</summary>
internal static class ServeCommand
{
    private const string Usage = "usage: tapdisk serve -s SOCKET [-R read-only] [-N no O_DIRECT] [-k KEYFILE encryption key] [--raw-ciphertext serve encrypted VHDs undecrypted] TYPE:PATH\n";

    public static int Run(string[] args)
    {
        string? socket = null, parameters = null, keyFile = null;
        bool readOnly = false, buffered = false, rawCiphertext = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "-s" when i + 1 < args.Length: socket = args[++i]; break;
                case "-R": readOnly = true; break;
                case "-N": buffered = true; break;
                case "-k" when i + 1 < args.Length: keyFile = args[++i]; break;
                case "--raw-ciphertext": rawCiphertext = true; break;
                case "-h":
                    Console.Out.Write(Usage);
                    return 0;
                default:
                    if (args[i].StartsWith('-') || parameters is not null)
                    {
                        Console.Error.Write(Usage);
                        return Errno.EINVAL;
                    }

                    parameters = args[i];
                    break;
            }
        }

        if (socket is null || parameters is null)
        {
            Console.Error.Write(Usage);
            return Errno.EINVAL;
        }

        VhdKey? key = null;
        try
        {
            key = keyFile is null ? null : VhdKey.ReadFile(keyFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"tapdisk serve: cannot read key file {keyFile}: {e.GetType().Name}");
            return StorageErrors.ToErrno(e);
        }

        using (key)
        {
            // The key (if any) lives until the image is closed; the driver keeps its own pinned copies per layer.
            VhdCryptoOptions? crypto = key is null && !rawCiphertext ? null : new VhdCryptoOptions { Key = key, AllowCiphertext = rawCiphertext };
            return ServeAsync(socket, parameters, new ImageOpenOptions { ReadOnly = readOnly, DirectIo = !buffered }, crypto).GetAwaiter().GetResult();
        }
    }

    private static async Task<int> ServeAsync(string socket, string parameters, ImageOpenOptions options, VhdCryptoOptions? crypto)
    {
        using var log = new ProcessLog("tapdisk", Program.LogLinesPerWindow);
        string engine;
        try
        {
            engine = IoEngine.Describe();
        }
        catch (Exception e) when (e is IOException or ArgumentException)
        {
            Console.Error.WriteLine($"tapdisk serve: {e.Message}");
            return Errno.EINVAL;
        }

        IBlockImage image;
        try
        {
            image = DiskTypes.Open(parameters, options, crypto);
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"tapdisk serve: {e.Message}");
            return StorageErrors.ToErrno(e);
        }

        var logger = new DaemonLogger(log);
        using var backend = new BlockBackend(image, new BlockBackendOptions { Name = parameters, Logger = logger });
        var export = new NbdExport(string.Empty, parameters, backend);
        var server = new NbdServer(export, logger: logger);
        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using PosixSignalRegistration intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        NbdUnixListener listener = NbdUnixListener.Start(socket, server);
        Console.Error.WriteLine($"tapdisk serve: serving {parameters} ({image.SizeBytes} bytes) on nbd+unix:///?socket={socket}, I/O engine {engine}");
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // SIGTERM or SIGINT: drain and close cleanly below (footers written).
        }

        try
        {
            await backend.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Bounded shutdown: say what we waited for, then close; the stuck requests fail.
            log.Error($"{parameters}: {backend.InFlight} requests still in flight after 30 s; closing anyway");
        }
        await listener.DisposeAsync().ConfigureAwait(false);
        await backend.CloseImageAsync().ConfigureAwait(false);
        return 0;
    }
}
