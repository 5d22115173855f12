namespace Tapdisk.CbtUtil;

/// <summary>
/// GNU getopt(3) as cbt-util uses it: options anywhere among the operands, clustered flags, and glibc's two
/// complaints on stderr prefixed with argv[0] (the command name, as cbt-util passes it).
/// </summary>
internal sealed class GetOpt
{
    private readonly string _name;
    private readonly string[] _args;
    private readonly string _spec;
    private readonly TextWriter _error;
    private int _index;
    private int _charIndex;

    public GetOpt(string name, string[] args, string spec, TextWriter error)
    {
        _name = name;
        _args = args;
        _spec = spec;
        _error = error;
    }

    /// <summary>Next option character; '?' after printing why (unknown option, missing argument); -1 at the end.</summary>
    public int Next(out string? argument)
    {
        argument = null;
        while (_index < _args.Length)
        {
            string arg = _args[_index];
            if (_charIndex == 0)
            {
                if (arg == "--")
                {
                    _index = _args.Length;
                    return -1;
                }

                if (arg.Length < 2 || arg[0] != '-')
                {
                    // An operand: cbt-util takes none and ignores them (GNU getopt permutes them to the end).
                    _index++;
                    continue;
                }

                _charIndex = 1;
            }

            char c = arg[_charIndex++];
            int pos = c == ':' ? -1 : _spec.IndexOf(c, StringComparison.Ordinal);
            bool takesArgument = pos >= 0 && pos + 1 < _spec.Length && _spec[pos + 1] == ':';
            if (takesArgument)
            {
                if (_charIndex < arg.Length)
                {
                    argument = arg[_charIndex..];
                }
                else if (_index + 1 < _args.Length)
                {
                    argument = _args[++_index];
                }
                else
                {
                    _index++;
                    _charIndex = 0;
                    _error.Write($"{_name}: option requires an argument -- '{c}'\n");
                    return '?';
                }

                _index++;
                _charIndex = 0;
                return c;
            }

            if (_charIndex >= arg.Length)
            {
                _index++;
                _charIndex = 0;
            }

            if (pos < 0)
            {
                _error.Write($"{_name}: invalid option -- '{c}'\n");
                return '?';
            }

            return c;
        }

        return -1;
    }
}
