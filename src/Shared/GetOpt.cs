namespace Tapdisk;

/// <summary>
/// GNU getopt(3) over an argument list, as blktap's vhd-util and cbt-util use it: "n:s:r" style option strings,
/// clustered flags, operands anywhere (collected in <see cref="Operands"/>, as GNU getopt permutes them to the end),
/// "--" ends the options. With a writer, glibc's two complaints go to it prefixed with the given name (what the
/// tool passes as argv[0]). One source file compiled into each tool that parses options.
/// </summary>
internal sealed class GetOpt
{
    private readonly string[] _args;
    private readonly string _spec;
    private readonly string? _name;
    private readonly TextWriter? _error;
    private int _index;
    private int _charIndex;

    public GetOpt(string[] args, string spec, string? name = null, TextWriter? error = null)
    {
        _args = args;
        _spec = spec;
        _name = name;
        _error = error;
    }

    /// <summary>Arguments that are not options.</summary>
    public List<string> Operands { get; } = [];

    /// <summary>Next option character; '?' for an unknown option or a missing argument (said on the writer, if any); -1 at the end.</summary>
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
                    Operands.AddRange(_args[(_index + 1)..]);
                    _index = _args.Length;
                    return -1;
                }

                if (arg.Length < 2 || arg[0] != '-')
                {
                    Operands.Add(arg);
                    _index++;
                    continue;
                }

                _charIndex = 1;
            }

            char c = arg[_charIndex++];

            // ':' marks an argument in the spec; it is never an option itself.
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
                    _error?.Write($"{_name}: option requires an argument -- '{c}'\n");
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
                _error?.Write($"{_name}: invalid option -- '{c}'\n");
                return '?';
            }

            return c;
        }

        return -1;
    }
}
