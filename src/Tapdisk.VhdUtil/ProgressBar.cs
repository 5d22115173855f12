using System.Globalization;

namespace Tapdisk.VhdUtil;

/// <summary>A one-line progress bar on stderr, drawn only when stderr is a terminal (quiet when piped or logged).</summary>
internal sealed class ProgressBar : IDisposable
{
    private const int Width = 40;
    private readonly string _label;
    private int _lastPermille = -1;
    private bool _drawn;

    private ProgressBar(string label)
    {
        _label = label;
    }

    public static ProgressBar? ForTerminal(string label) => Console.IsErrorRedirected ? null : new ProgressBar(label);

    public void Report(long done, long total)
    {
        int permille = total <= 0 ? 1000 : (int)(done * 1000 / total);
        if (permille == _lastPermille)
        {
            return;
        }

        _lastPermille = permille;
        int filled = permille * Width / 1000;
        Console.Error.Write(string.Create(CultureInfo.InvariantCulture, $"\r{_label} [{new string('#', filled)}{new string('.', Width - filled)}] {permille / 10.0,5:F1}%"));
        _drawn = true;
    }

    public void Dispose()
    {
        if (_drawn)
        {
            // Erase the bar so the command's own output starts on a clean line.
            Console.Error.Write("\r" + new string(' ', _label.Length + Width + 11) + "\r");
            _drawn = false;
        }
    }
}
