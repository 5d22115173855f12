using System.Globalization;

namespace Tapdisk.Tapback;

/// <summary>
/// Parses numbers a frontend or toolstack wrote: decimal digits only, range-checked. The reference reads them with
/// scanf and accepts trailing garbage or huge strings (control-xen.md Part II 6, case 34); we do not.
/// </summary>
internal static class StrictNumber
{
    private const int MaxDigits = 20;

    public static bool TryParseUInt32(string? text, out uint value)
    {
        value = 0;
        return IsDigits(text) && uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    public static bool TryParseInt32(string? text, out int value)
    {
        value = 0;
        return IsDigits(text) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    private static bool IsDigits(string? text)
    {
        if (string.IsNullOrEmpty(text) || text.Length > MaxDigits)
        {
            return false;
        }

        foreach (char c in text)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        return true;
    }

    public static string Format(ulong value) => value.ToString(CultureInfo.InvariantCulture);
}
