using System.Globalization;

namespace Tapdisk.TapCtl;

/// <summary>
/// POSIX getopt(3) with GNU argument permutation: options may follow non-options, "--" ends option parsing, short
/// options group ("-RD"), and an option argument is the rest of the word or the next word. Diagnostics go to stderr
/// prefixed with the subcommand name, as tap-ctl passes the subcommand's argv to getopt (control-xen.md 5.1).
/// </summary>
internal sealed class GetOpt
{
    /// <summary>Returned for an unknown option or a missing option argument (after the diagnostic was printed).</summary>
    public const char Error = '?';

    private readonly string _program;
    private readonly string[] _args;
    private readonly string _optstring;
    private int _index;
    private int _charIndex;

    public GetOpt(string program, string[] args, string optstring)
    {
        _program = program;
        _args = args;
        _optstring = optstring;
    }

    /// <summary>The argument of the option just returned, if it takes one.</summary>
    public string? Argument { get; private set; }

    /// <summary>Non-option words seen so far (tap-ctl ignores them).</summary>
    public List<string> Operands { get; } = [];

    /// <summary>The next option character, <see cref="Error"/>, or null when the options are exhausted.</summary>
    public char? Next()
    {
        Argument = null;
        while (_charIndex == 0)
        {
            if (_index >= _args.Length)
            {
                return null;
            }

            string word = _args[_index];
            if (word == "--")
            {
                Operands.AddRange(_args[(_index + 1)..]);
                _index = _args.Length;
                return null;
            }

            if (word.Length > 1 && word[0] == '-')
            {
                _charIndex = 1;
                break;
            }

            // GNU permutation: a non-option word is set aside and scanning continues.
            Operands.Add(word);
            _index++;
        }

        string current = _args[_index];
        char c = current[_charIndex++];
        bool lastInWord = _charIndex >= current.Length;
        int spec = c == ':' ? -1 : _optstring.IndexOf(c, StringComparison.Ordinal);
        if (spec < 0)
        {
            Advance(lastInWord);
            Terminal.Error($"{_program}: invalid option -- '{c}'\n");
            return Error;
        }

        bool takesArgument = spec + 1 < _optstring.Length && _optstring[spec + 1] == ':';
        if (!takesArgument)
        {
            Advance(lastInWord);
            return c;
        }

        if (!lastInWord)
        {
            Argument = current[_charIndex..];
            Advance(true);
            return c;
        }

        Advance(true);
        if (_index >= _args.Length)
        {
            Terminal.Error($"{_program}: option requires an argument -- '{c}'\n");
            return Error;
        }

        Argument = _args[_index++];
        return c;
    }

    /// <summary>atoi(3): leading blanks, an optional sign, digits; anything else ends the number; no digits gives 0.</summary>
    public static int Atoi(string? text)
    {
        if (text is null)
        {
            return 0;
        }

        int i = 0;
        while (i < text.Length && (text[i] == ' ' || (text[i] >= '\t' && text[i] <= '\r')))
        {
            i++;
        }

        bool negative = false;
        if (i < text.Length && (text[i] == '+' || text[i] == '-'))
        {
            negative = text[i] == '-';
            i++;
        }

        long value = 0;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
        {
            // strtol saturates at LONG_MAX/LONG_MIN; atoi then truncates to int.
            value = value > (long.MaxValue - 9) / 10 ? long.MaxValue : (value * 10) + (text[i] - '0');
        }

        return unchecked((int)(negative ? -value : value));
    }

    /// <summary>Formats with the invariant culture.</summary>
    public static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);

    private void Advance(bool wordDone)
    {
        if (wordDone)
        {
            _index++;
            _charIndex = 0;
        }
    }
}
