namespace Tapdisk.VhdUtil;

/// <summary>POSIX getopt(3) over an argument list: "n:s:r" style option strings, options may be clustered.</summary>
internal sealed class GetOpt
{
    private readonly string[] _args;
    private readonly string _spec;
    private int _index;
    private int _charIndex;

    public GetOpt(string[] args, string spec)
    {
        _args = args;
        _spec = spec;
    }

    /// <summary>Arguments that are not options.</summary>
    public List<string> Operands { get; } = [];

    /// <summary>Next option character, '?' for an unknown one or a missing argument, -1 at the end.</summary>
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
            int pos = _spec.IndexOf(c, StringComparison.Ordinal);
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

            return pos >= 0 ? c : '?';
        }

        return -1;
    }
}
