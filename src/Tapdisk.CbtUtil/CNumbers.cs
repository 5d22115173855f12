namespace Tapdisk.CbtUtil;

/// <summary>The C library's lenient parsers cbt-util relies on: strtoull(s, NULL, 10), atoi, uuid_parse.</summary>
internal static class CNumbers
{
    /// <summary>strtoull base 10: leading space, an optional sign (minus negates modulo 2^64), digits up to the first other character, ULLONG_MAX on overflow.</summary>
    public static ulong StrToULL(string text)
    {
        int i = SkipSpace(text);
        bool negative = false;
        if (i < text.Length && text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }

        ulong value = 0;
        bool overflow = false;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
        {
            ulong digit = (ulong)(text[i] - '0');
            if (value > (ulong.MaxValue - digit) / 10)
            {
                overflow = true;
            }

            value = unchecked((value * 10) + digit);
        }

        if (overflow)
        {
            return ulong.MaxValue;
        }

        return negative ? unchecked(0 - value) : value;
    }

    /// <summary>atoi: strtol base 10 truncated to int; 0 when nothing parses.</summary>
    public static int AtoI(string text)
    {
        int i = SkipSpace(text);
        bool negative = false;
        if (i < text.Length && text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }

        long value = 0;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
        {
            // strtol saturates at LONG_MIN/LONG_MAX; the int conversion then keeps the low 32 bits.
            value = value > (long.MaxValue - 9) / 10 ? long.MaxValue : (value * 10) + (text[i] - '0');
        }

        return unchecked((int)(negative ? -value : value));
    }

    /// <summary>uuid_parse: exactly 36 characters, hyphens at 8, 13, 18 and 23, hex digits elsewhere (either case).</summary>
    public static bool TryParseUuid(string text, out Guid uuid)
    {
        uuid = Guid.Empty;
        if (text.Length != 36)
        {
            return false;
        }

        for (int i = 0; i < 36; i++)
        {
            bool hyphen = i is 8 or 13 or 18 or 23;
            if (hyphen ? text[i] != '-' : !char.IsAsciiHexDigit(text[i]))
            {
                return false;
            }
        }

        return Guid.TryParseExact(text, "D", out uuid);
    }

    private static int SkipSpace(string text)
    {
        int i = 0;
        while (i < text.Length && text[i] is ' ' or '\t' or '\n' or '\v' or '\f' or '\r')
        {
            i++;
        }

        return i;
    }
}
