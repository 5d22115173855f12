using System.Diagnostics;
using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Control;
using Tapdisk.Logging;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>
/// tapdisk. With no arguments it starts as tap-ctl spawn expects (control-xen.md 4.1): it detaches, and the process
/// tap-ctl started prints "&lt;root&gt;/ctl&lt;pid&gt;" once the daemon's control socket listens, then exits 0.
/// </summary>
internal static class Program
{
    private const string DaemonChildFlag = "--daemon-child";
    private const string DefaultLogDirectory = "/var/log/blktap";

    // Not in PosixSignal; .NET takes the raw number on Unix (SIGUSR1 is 10 on x86-64 and arm64 Linux).
    private const PosixSignal SIGUSR1 = (PosixSignal)10;

    /// <summary>Lines a repeating fault (one disk's failing I/O) may log per 10 s.</summary>
    internal const int LogLinesPerWindow = 20;
    private const string Usage = "usage: tapdisk [-D] [-h]\n       tapdisk serve -s SOCKET [-R] [-N] TYPE:PATH\n";

    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "serve")
        {
            return ServeCommand.Run(args[1..]);
        }

        bool foreground = false, child = false, verbose = false;
        foreach (string arg in args)
        {
            switch (arg)
            {
                case "-D": foreground = true; break;
                case "-v": verbose = true; break;
                case DaemonChildFlag: child = true; break;
                case "-h":
                    Console.Out.Write(Usage);
                    return 0;
                default:
                    Console.Error.Write(Usage);
                    return Errno.EINVAL;
            }
        }

        if (!foreground && !child)
        {
            return SpawnDetached(verbose);
        }

        return RunDaemon(detached: child, verbose).GetAwaiter().GetResult();
    }

    /// <summary>Starts the real daemon as a child in its own session and relays its control path line.</summary>
    private static int SpawnDetached(bool verbose)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath ?? "tapdisk")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(DaemonChildFlag);
        if (verbose)
        {
            psi.ArgumentList.Add("-v");
        }

        using Process daemon = Process.Start(psi) ?? throw new InvalidOperationException("cannot start the tapdisk daemon process");
        daemon.StandardInput.Close();
        Task<string> errors = daemon.StandardError.ReadToEndAsync();
        string? line = daemon.StandardOutput.ReadLine();

        // Once the line is here the daemon runs on; the runtime may keep a copy of its original stderr open, so
        // its errors are relayed only when it failed to start (then the pipe closes as the process exits).
        if (line is null)
        {
            daemon.WaitForExit(TimeSpan.FromSeconds(30));
            if (errors.Wait(TimeSpan.FromSeconds(5)) && errors.Result.Length > 0)
            {
                Console.Error.Write(errors.Result);
            }

            return daemon.HasExited && daemon.ExitCode != 0 ? daemon.ExitCode : 1;
        }

        Console.Out.WriteLine(line);
        Console.Out.Flush();
        return 0;
    }

    private static async Task<int> RunDaemon(bool detached, bool verbose)
    {
        if (detached)
        {
            ProcessControl.NewSession();
        }

        using var log = new ProcessLog("tapdisk", LogLinesPerWindow) { Verbose = verbose };
        OpenLogFile(log);
        Directory.CreateDirectory(ControlPaths.Root);
        try
        {
            log.Info($"I/O engine: {IoEngine.Describe()}");
        }
        catch (Exception e) when (e is IOException or ArgumentException)
        {
            // TAPDISK_IO_ENGINE asked for what this machine cannot give: refuse to start rather than run otherwise.
            log.Error(e.Message);
            return Errno.EINVAL;
        }

        var host = new TapdiskHost(log);
        string controlPath = ControlPaths.ControlSocket(host.Pid);
        ControlServer server;
        try
        {
            server = ControlServer.Listen(controlPath, host);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            log.Error($"cannot listen on {controlPath}: {e.Message}");
            return Errno.EIO;
        }

        host.ControlServer = server;
        host.StartSharedStats();
        NbdClientReceiver? nbdClient = NbdClientReceiver.TryStart(ControlPaths.NbdClientSocket(host.Pid), log);
        server.Start();
        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using PosixSignalRegistration intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

        // SIGHUP: logrotate moved the log file away; SIGUSR1: dump the VBDs' state into it and keep it (control-xen.md 4.3).
        using PosixSignalRegistration hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            ReopenLogFile(log);
        });
        using PosixSignalRegistration usr1 = PosixSignalRegistration.Create(SIGUSR1, c =>
        {
            c.Cancel = true;
            host.LogDebugState();
            log.File?.MarkPrecious();
        });

        // The spawner reads exactly this line (control-xen.md 4.1); nothing may be printed before it.
        Console.Out.WriteLine(controlPath);
        Console.Out.Flush();
        if (detached)
        {
            ProcessControl.RedirectStdioToDevNull();
            log.DetachStderr();
        }

        log.Info($"started, control socket {controlPath}");
        try
        {
            await host.LastDetached.WaitAsync(stop.Token).ConfigureAwait(false);
            log.Info("last VBD detached; exiting");
        }
        catch (OperationCanceledException)
        {
            log.Info("signal received: closing every VBD");
        }

        await host.DisposeAsync().ConfigureAwait(false);
        host.StopSharedStats();
        if (nbdClient is not null)
        {
            await nbdClient.DisposeAsync().ConfigureAwait(false);
        }

        await server.DisposeAsync().ConfigureAwait(false);

        // A clean stop deletes the log file unless an error was logged or SIGUSR1 asked to keep it.
        log.File?.Close(cleanExit: true);
        log.File = null;
        return 0;
    }

    /// <summary>
    /// /var/log/blktap/tapdisk.&lt;pid&gt;.log; TAPDISK_LOG_DIR overrides the directory (a deliberate addition, for tests
    /// and unprivileged runs). Unlike blktap, a log file that cannot be opened is reported and the daemon goes on with
    /// syslog alone: a disk is worth more than its log.
    /// </summary>
    private static void OpenLogFile(ProcessLog log)
    {
        string directory = Environment.GetEnvironmentVariable("TAPDISK_LOG_DIR") is { Length: > 0 } dir ? dir : DefaultLogDirectory;
        try
        {
            log.File = LogFile.Open(directory, "tapdisk", Environment.ProcessId);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.Warning($"cannot open the log file in {directory}: {e.Message}; logging to syslog only");
        }
    }

    private static void ReopenLogFile(ProcessLog log)
    {
        try
        {
            log.File?.Reopen();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogFile? file = log.File;
            log.File = null;
            log.Error($"cannot reopen {file?.Path}: {e.Message}; logging to syslog only");
        }
    }
}
