namespace Tapdisk.Tapback.Tests;

/// <summary>The agent's stderr as text; written from the agent's tasks, read by the test.</summary>
internal sealed class LogCapture : TextWriter
{
    private readonly Lock _lock = new();
    private readonly System.Text.StringBuilder _text = new();

    public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

    public override void Write(char value)
    {
        lock (_lock)
        {
            _text.Append(value);
        }
    }

    public override void WriteLine(string? value)
    {
        lock (_lock)
        {
            _text.Append(value).Append('\n');
        }
    }

    public override string ToString()
    {
        lock (_lock)
        {
            return _text.ToString();
        }
    }
}
