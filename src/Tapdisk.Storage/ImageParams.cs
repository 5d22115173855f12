namespace Tapdisk.Storage;

/// <summary>blktap's "type:/path" image parameter.</summary>
public readonly record struct ImageParams(string DriverName, string Path)
{
    public static bool TryParse(string? text, out ImageParams result)
    {
        result = default;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        int colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == text.Length - 1)
        {
            return false;
        }

        result = new ImageParams(text[..colon], text[(colon + 1)..]);
        return true;
    }

    public override string ToString() => $"{DriverName}:{Path}";
}
