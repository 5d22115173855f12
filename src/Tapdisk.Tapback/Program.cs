using System.Diagnostics;
using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Logging;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback;

/// <summary>
/// tapback, the XenStore agent that connects blkfront rings to tapdisks. Without -d it detaches (systemd's
/// Type=forking): the started process waits until the detached agent has its watches in place, then exits 0.
/// </summary>
internal static class Program
{
    private const string ReadyLine = "tapback ready";

    private static int Main(string[] args)
    {
        if (args is ["-h"] or ["--help"])
        {
            Console.Out.Write(CommandLine.Usage);
            return 0;
        }

        (TapbackOptions? options, bool child, string? error) = CommandLine.Parse(args);
        if (options is null)
        {
            Console.Error.Write($"tapback: {error}\n{CommandLine.Usage}");
            return Errno.EINVAL;
        }

        if (!options.Foreground && !child)
        {
            return SpawnDetached(args);
        }

        return RunAsync(options, child).GetAwaiter().GetResult();
    }

    /// <summary>Starts the agent again as a detached child and relays its start-up verdict.</summary>
    private static int SpawnDetached(string[] args)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath ?? "tapback")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(CommandLine.DaemonChildFlag);
        foreach (string arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        using Process daemon = Process.Start(psi) ?? throw new InvalidOperationException("cannot start the tapback daemon process");
        daemon.StandardInput.Close();
        Task<string> errors = daemon.StandardError.ReadToEndAsync();
        string? line = daemon.StandardOutput.ReadLine();
        if (line != ReadyLine)
        {
            daemon.WaitForExit(TimeSpan.FromSeconds(30));
            if (errors.Wait(TimeSpan.FromSeconds(5)) && errors.Result.Length > 0)
            {
                Console.Error.Write(errors.Result);
            }

            return daemon.HasExited && daemon.ExitCode != 0 ? daemon.ExitCode : 1;
        }

        return 0;
    }

    private static async Task<int> RunAsync(TapbackOptions options, bool detached)
    {
        if (detached)
        {
            ProcessControl.NewSession();
        }

        using var log = new ProcessLog("tapback", TapbackAgent.LogLinesPerWindow) { Verbose = options.Verbose };
        if (!File.Exists("/dev/xen/gntdev"))
        {
            // The reference refuses to start without gntdev; tapback itself never opens it (tapdisk does), so we
            // only warn, which also lets the agent run against a test xenstored.
            log.Warning("/dev/xen/gntdev is missing: tapdisk will not be able to map rings on this host");
        }

        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using PosixSignalRegistration intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

        XenStoreClient xenStore;
        try
        {
            xenStore = await XenStoreClient.ConnectAsync(cancellationToken: stop.Token).ConfigureAwait(false);
        }
        catch (XenStoreConnectionLostException e)
        {
            log.Error(e.Message);
            return Errno.ENOENT;
        }

        await using (xenStore.ConfigureAwait(false))
        {
            log.Info($"connected to xenstored ({xenStore.Endpoint})");
            var agent = new TapbackAgent(xenStore, options, log);
            Task run = agent.RunAsync(stop.Token);
            try
            {
                await Task.WhenAny(agent.Started, run).ConfigureAwait(false);
                if (run.IsCompleted)
                {
                    await run.ConfigureAwait(false);
                    return 1;
                }

                if (options.PidFile is { } pidFile)
                {
                    await File.WriteAllTextAsync(pidFile, StrictNumber.Format((ulong)Environment.ProcessId) + "\n", CancellationToken.None).ConfigureAwait(false);
                }

                if (detached)
                {
                    Console.Out.WriteLine(ReadyLine);
                    Console.Out.Flush();
                    ProcessControl.RedirectStdioToDevNull();
                    log.DetachStderr();
                }

                await run.ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Deliberate difference: the reference ignores SIGTERM while it serves devices. Rings live in
                // tapdisk, and a restarted tapback adopts them again (CONNECT answers EALREADY), so exiting is safe.
                log.Info("signal received; exiting (connected rings stay with their tapdisks)");
            }
        }

        if (options.PidFile is { } file)
        {
            File.Delete(file);
        }

        return 0;
    }
}
