using System.Globalization;

namespace Tapdisk.Abi.Tests;

/// <summary>One line of a native/abi-probes/*.probe manifest: a C fact, its expected value and its C# target.</summary>
/// <remarks><c>Target</c> is the C# declaration relative to namespace Tapdisk.Abi, or null for a C-only fact (<c>=> -</c>).</remarks>
public sealed record AbiProbeEntry(string Group, int Line, AbiProbeKind Kind, string CType, string? Member, string ConstName, long Value, string? Target)
{
    /// <summary>The C expression whose value the entry fixes.</summary>
    public string CExpression => Kind switch
    {
        AbiProbeKind.SizeOf => $"sizeof({CType})",
        AbiProbeKind.OffsetOf => $"offsetof({CType}, {Member})",
        AbiProbeKind.FieldSize => $"sizeof((({CType} *)0)->{Member})",
        AbiProbeKind.Const => ConstName,
        _ => throw new InvalidOperationException(Kind.ToString()),
    };

    /// <summary>Short human name of the item: <c>offsetof(struct stat, st_mode)</c>, <c>O_DIRECT</c>.</summary>
    public string Item => Kind switch
    {
        AbiProbeKind.FieldSize => $"sizeof({CType}::{Member})",
        _ => CExpression,
    };

    public string ValueText => FormatValue(Value);

    /// <summary>Where the entry is and what it claims, e.g. <c>libc-stat.probe:12: offsetof(struct stat, st_mode) == 24</c>.</summary>
    public string Location => $"{Group}.probe:{Line}";

    public override string ToString() => $"{Location}: {Item} == {ValueText}";

    public static string FormatValue(long value) =>
        value is >= 0 and < 256 ? value.ToString(CultureInfo.InvariantCulture) : value < 0 ? value.ToString(CultureInfo.InvariantCulture) : "0x" + value.ToString("X", CultureInfo.InvariantCulture);
}
