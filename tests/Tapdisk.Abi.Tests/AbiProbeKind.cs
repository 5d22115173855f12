namespace Tapdisk.Abi.Tests;

/// <summary>What one manifest entry asserts about the C headers.</summary>
public enum AbiProbeKind
{
    SizeOf,
    OffsetOf,
    FieldSize,
    Const,
}
