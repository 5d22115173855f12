using System.Globalization;

namespace Tapdisk.TapCtl;

/// <summary>One line of tap-ctl list; absent fields print as "-" (tty) or are left out (pairs).</summary>
internal sealed record ListRow(int? Pid, int? Minor, int? State, string? Type, string? File)
{
    /// <summary>printf("%8s %4s %4s %10s %s\n") with "-" for absent values; no header line.</summary>
    public string FormatTable() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Text(Pid),8} {Text(Minor),4} {(State is { } s ? FormatState(s) : "-"),4} {Type ?? "-",10} {File ?? "-"}");

    /// <summary>"pid=P minor=M state=S args=T:F", each only when present (args only with both type and file).</summary>
    public string FormatPairs()
    {
        var parts = new List<string>(4);
        if (Pid is { } pid)
        {
            parts.Add("pid=" + GetOpt.Format(pid));
        }

        if (Minor is { } minor)
        {
            parts.Add("minor=" + GetOpt.Format(minor));
        }

        if (State is { } state)
        {
            parts.Add("state=" + FormatState(state));
        }

        if (Type is not null && File is not null)
        {
            parts.Add("args=" + Type + ":" + File);
        }

        return string.Join(' ', parts);
    }

    /// <summary>printf("%#x"): "0" for zero, else "0x" and lower-case hex.</summary>
    public static string FormatState(int state) => state == 0 ? "0" : "0x" + ((uint)state).ToString("x", CultureInfo.InvariantCulture);

    private static string Text(int? value) => value is { } v ? GetOpt.Format(v) : "-";
}
