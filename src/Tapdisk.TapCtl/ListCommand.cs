using System.Text;
using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>
/// tap-ctl list (control-xen.md 5.3): PID to every ctl* socket, LIST to each tapdisk that answered, orphan minors
/// last; unreachable tapdisks are skipped silently.
/// </summary>
internal static class ListCommand
{
    public static int Run(string[] args)
    {
        int pid = -1;
        int minor = -1;
        string? type = null;
        string? file = null;
        var getopt = new GetOpt("list", args, "hp:m:t:f:");
        while (getopt.Next() is char c)
        {
            switch (c)
            {
                case 'p':
                    pid = GetOpt.Atoi(getopt.Argument);
                    break;
                case 'm':
                    minor = GetOpt.Atoi(getopt.Argument);
                    break;
                case 't':
                    type = getopt.Argument;
                    break;
                case 'f':
                    file = getopt.Argument;
                    break;
                case 'h':
                    Terminal.Out(Usage.List);
                    return 0;
                default:
                    Terminal.Error(Usage.List);
                    return ErrnoText.EINVAL;
            }
        }

        List<ListRow> rows = Collect(pid);
        bool tty = Terminal.StdoutIsTty;
        var output = new StringBuilder();
        foreach (ListRow row in rows)
        {
            if ((minor != -1 && row.Minor != minor)
                || (pid != -1 && row.Pid != pid)
                || (type is not null && row.Type != type)
                || (file is not null && row.File != file))
            {
                continue;
            }

            output.Append(tty ? row.FormatTable() : row.FormatPairs()).Append('\n');
        }

        Terminal.Out(output.ToString());
        return 0;
    }

    /// <summary>Every row in the reference's order: tapdisks in glob order, VBDs reversed, orphan minors last.</summary>
    public static List<ListRow> Collect(int pidFilter)
    {
        var minors = new List<int>();
        var candidates = new List<int>();
        if (pidFilter != -1)
        {
            candidates.Add(pidFilter);
        }
        else
        {
            minors = Minors.Scan();
            candidates = ScanControlSockets();
        }

        var tapdisks = new List<int>();
        foreach (int candidate in candidates)
        {
            try
            {
                tapdisks.Add(Tapdisks.GetPid(candidate));
            }
            catch (ControlException)
            {
                // Dead (stale socket), absent or silent tapdisks are skipped without a word (control-xen.md 2.1).
            }
        }

        var rows = new List<ListRow>();
        var served = new HashSet<int>();
        foreach (int tapdisk in tapdisks)
        {
            List<(int Minor, int State, string Path)>? entries = Tapdisks.List(tapdisk);
            if (entries is null || entries.Count == 0)
            {
                rows.Add(new ListRow(tapdisk, null, null, null, null));
                continue;
            }

            // The reference prepends each entry to its list, so one tapdisk's VBDs come out in reverse.
            for (int i = entries.Count - 1; i >= 0; i--)
            {
                (int vbdMinor, int state, string path) = entries[i];
                SplitParams(path, out string? type, out string? file);
                rows.Add(new ListRow(tapdisk, vbdMinor, state, type, file));
                served.Add(vbdMinor);
            }
        }

        foreach (int orphan in minors)
        {
            if (!served.Contains(orphan))
            {
                rows.Add(new ListRow(null, orphan, null, null, null));
            }
        }

        return rows;
    }

    private static List<int> ScanControlSockets()
    {
        var pids = new List<int>();
        if (!Directory.Exists(ControlPaths.Root))
        {
            return pids;
        }

        string[] names = Directory.GetFileSystemEntries(ControlPaths.Root, "ctl*").Select(Path.GetFileName).OfType<string>().ToArray();
        Array.Sort(names, StringComparer.Ordinal);
        foreach (string name in names)
        {
            if (ControlPaths.TryParseControlSocket(name, out int pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    /// <summary>"type:/path" split at the first colon; an empty string (attached, not open) has neither.</summary>
    private static void SplitParams(string path, out string? type, out string? file)
    {
        type = null;
        file = null;
        if (path.Length == 0)
        {
            return;
        }

        int colon = path.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            file = path;
            return;
        }

        type = path[..colon];
        file = path[(colon + 1)..];
    }
}
