using System.Globalization;
using System.Text;

namespace Tapdisk.Daemon;

/// <summary>
/// Writes tapdisk's stats text: the reference's keys, order and spacing (control-xen.md 6.2-6.4), but with strings
/// escaped per RFC 8259 (the reference emits invalid JSON for paths with quotes or backslashes).
/// </summary>
internal sealed class StatsJson
{
    private readonly StringBuilder _sb = new();
    private readonly Stack<bool> _first = new();

    public override string ToString() => _sb.ToString();

    public StatsJson BeginObject(string? key = null) => Open(key, "{ ");

    public StatsJson EndObject() => Close(" }");

    public StatsJson BeginArray(string? key = null) => Open(key, "[ ");

    public StatsJson EndArray() => Close(" ]");

    public StatsJson String(string key, string? value)
    {
        Key(key);
        if (value is null)
        {
            _sb.Append("null");
        }
        else
        {
            AppendString(value);
        }

        return this;
    }

    public StatsJson Number(string key, long value)
    {
        Key(key);
        _sb.Append(value.ToString(CultureInfo.InvariantCulture));
        return this;
    }

    public StatsJson Null(string key)
    {
        Key(key);
        _sb.Append("null");
        return this;
    }

    public StatsJson Pair(string key, long a, long b)
    {
        Key(key);
        _sb.Append(CultureInfo.InvariantCulture, $"[ {a}, {b} ]");
        return this;
    }

    private StatsJson Open(string? key, string token)
    {
        if (key is null)
        {
            Separator();
        }
        else
        {
            Key(key);
        }

        _sb.Append(token);
        _first.Push(true);
        return this;
    }

    private StatsJson Close(string token)
    {
        // An empty container prints as "[  ]": the opening "[ " then the closing " ]", as the reference does.
        _first.Pop();
        _sb.Append(token);
        return this;
    }

    private void Key(string key)
    {
        Separator();
        AppendString(key);
        _sb.Append(": ");
    }

    private void Separator()
    {
        if (_first.Count == 0)
        {
            return;
        }

        if (_first.Peek())
        {
            _first.Pop();
            _first.Push(false);
        }
        else
        {
            _sb.Append(", ");
        }
    }

    private void AppendString(string value)
    {
        _sb.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': _sb.Append("\\\""); break;
                case '\\': _sb.Append("\\\\"); break;
                case < ' ': _sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"); break;
                default: _sb.Append(c); break;
            }
        }

        _sb.Append('"');
    }
}
