using Tapdisk.Control;

namespace Tapdisk.TapCtl;

/// <summary>Accumulates OPEN flags from the command line.</summary>
internal sealed class TapdiskOpenFlagsBuilder
{
    public TapdiskOpenFlags Value { get; private set; }

    public void Add(TapdiskOpenFlags flag) => Value |= flag;
}
