using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>
/// Starts a tapdisk (control-xen.md 4.1): the binary runs with no arguments and stdout/stderr on pipes, detaches, and
/// the daemon writes "&lt;root&gt;/ctl&lt;pid&gt;\n" to the inherited stdout; the number is the tapdisk's id.
/// </summary>
internal static class Spawner
{
    /// <summary>Our documented override of the tapdisk binary (the reference has none).</summary>
    public const string ExecVariable = "TAPDISK_EXEC";

    private static readonly string[] s_libexecPaths = ["/usr/libexec/tapdisk", "/usr/local/libexec/tapdisk"];

    /// <summary>TAPDISK_EXEC, else "tapdisk" next to tap-ctl, else the libexec paths of an RPM or a bare ./configure.</summary>
    public static string TapdiskPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable(ExecVariable) is { Length: > 0 } configured)
            {
                return configured;
            }

            if (Path.GetDirectoryName(Environment.ProcessPath) is { } ownDir && File.Exists(Path.Combine(ownDir, "tapdisk")))
            {
                return Path.Combine(ownDir, "tapdisk");
            }

            return s_libexecPaths.FirstOrDefault(File.Exists) ?? s_libexecPaths[^1];
        }
    }

    /// <summary>Returns the tapdisk pid, or throws with the errno the reference would exit with.</summary>
    public static int Spawn()
    {
        var psi = new ProcessStartInfo(TapdiskPath)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new TapCtlException(ErrnoText.EIO, "cannot start tapdisk");
        }
        catch (Win32Exception e)
        {
            // The reference's child exits with the exec errno, which becomes the spawn error.
            throw new TapCtlException(e.NativeErrorCode is > 0 and < 256 ? e.NativeErrorCode : ErrnoText.ENOENT, e.Message);
        }

        using (process)
        {
            // stderr is drained in the background so a chatty child cannot block; it is not part of the id line.
            _ = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new TapCtlException(process.ExitCode & 0xFF, "tapdisk failed, status " + process.ExitCode.ToString(CultureInfo.InvariantCulture));
            }

            // Blocks until the detached daemon writes its line (or closes the pipe), as the reference's fscanf does.
            string? line = process.StandardOutput.ReadLine();
            if (line is null || !TryParseControlPath(line, out int pid))
            {
                throw new TapCtlException(ErrnoText.EPERM, "parsing id failed");
            }

            return pid;
        }
    }

    /// <summary>Parses "&lt;root&gt;/ctl&lt;pid&gt;" as the reference's fscanf("…/ctl%d") does.</summary>
    public static bool TryParseControlPath(string line, out int pid)
    {
        pid = 0;
        string prefix = Path.Combine(ControlPaths.Root, "ctl");
        if (!line.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> rest = line.AsSpan(prefix.Length).TrimStart();
        int end = 0;
        if (end < rest.Length && (rest[end] == '-' || rest[end] == '+'))
        {
            end++;
        }

        while (end < rest.Length && char.IsAsciiDigit(rest[end]))
        {
            end++;
        }

        return int.TryParse(rest[..end], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out pid);
    }
}
