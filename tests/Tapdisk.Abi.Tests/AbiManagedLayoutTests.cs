using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xunit;

namespace Tapdisk.Abi.Tests;

/// <summary>Manifest == C#: every manifest target matches the Tapdisk.Abi declaration, and every ABI declaration has an entry.</summary>
public sealed class AbiManagedLayoutTests
{
    private const string Namespace = "Tapdisk.Abi";
    private const BindingFlags AllStatic = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly;
    private const BindingFlags AllInstance = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly;

    private static readonly Assembly s_abi = typeof(Errno).Assembly;

    public static TheoryData<string> Groups => new(AbiManifest.GroupNames);

    [Theory]
    [MemberData(nameof(Groups))]
    public void Group_ManagedDeclarations_MatchManifest(string group)
    {
        var failures = new List<string>();
        foreach (AbiProbeEntry e in AbiManifest.Load(group).Entries.Where(e => e.Target is not null))
        {
            string? failure = Check(e);
            if (failure is not null)
            {
                failures.Add($"  {e.Location}: {e.Item} => {e.Target}: {failure}");
            }
        }

        Assert.True(failures.Count == 0, $"C# declarations differ from native/abi-probes/{group}.probe:\n" + string.Join('\n', failures));
    }

    [Fact]
    public void ManagedAbiDeclarations_AllAppearInManifest()
    {
        var covered = AbiManifest.LoadAll().SelectMany(g => g.Entries)
            .Where(e => e.Target is not null)
            .Select(e => (e.Kind, e.Target!))
            .ToHashSet();

        string[] missing = RequiredEntries().Where(r => !covered.Contains(r)).Select(r => $"  {r.Kind} => {r.Target}").ToArray();

        Assert.True(missing.Length == 0, "These Tapdisk.Abi declarations have no entry in native/abi-probes/*.probe (add one; see its README):\n" + string.Join('\n', missing));
    }

    [Fact]
    public void RequiredEntries_CoverTheKnownDeclarations()
    {
        // Guards the enumeration itself: if it found nothing the completeness test above would pass vacuously.
        var required = RequiredEntries().ToHashSet();
        Assert.Contains((AbiProbeKind.SizeOf, "Interop.Libc.Stat"), required);
        Assert.Contains((AbiProbeKind.OffsetOf, "Interop.Libc.Stat.Mode"), required);
        Assert.Contains((AbiProbeKind.FieldSize, "Interop.Libc.Stat.Blocks"), required);
        Assert.Contains((AbiProbeKind.Const, "Interop.Libc.SEEK_HOLE"), required);
        Assert.Contains((AbiProbeKind.Const, "OpenFlags.Direct"), required);
        Assert.Contains((AbiProbeKind.Const, "Errno.ENOENT"), required);
        Assert.DoesNotContain((AbiProbeKind.Const, "Interop.Libraries.Libc"), required);
    }

    /// <summary>Every (kind, target) pair the C# code needs the manifest to hold.</summary>
    private static IEnumerable<(AbiProbeKind Kind, string Target)> RequiredEntries()
    {
        Type interop = s_abi.GetType(Namespace + ".Interop", throwOnError: true)!;
        foreach (Type type in Nested(interop).Prepend(interop))
        {
            foreach (FieldInfo f in type.GetFields(AllStatic).Where(f => f.IsLiteral && f.FieldType != typeof(string)))
            {
                yield return (AbiProbeKind.Const, Name(type) + "." + f.Name);
            }

            if (type.IsValueType && !type.IsEnum)
            {
                yield return (AbiProbeKind.SizeOf, Name(type));
                foreach (FieldInfo f in type.GetFields(AllInstance))
                {
                    yield return (AbiProbeKind.OffsetOf, Name(type) + "." + f.Name);
                    yield return (AbiProbeKind.FieldSize, Name(type) + "." + f.Name);
                }
            }
        }

        foreach (Type type in new[] { typeof(OpenFlags), typeof(Errno) })
        {
            foreach (FieldInfo f in type.GetFields(AllStatic).Where(f => f.IsLiteral))
            {
                yield return (AbiProbeKind.Const, Name(type) + "." + f.Name);
            }
        }
    }

    private static IEnumerable<Type> Nested(Type type) =>
        type.GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic)
            .Where(t => t.GetCustomAttribute<CompilerGeneratedAttribute>() is null)
            .SelectMany(t => Nested(t).Prepend(t));

    private static string Name(Type type) => type.FullName![(Namespace.Length + 1)..].Replace('+', '.');

    /// <summary>Null when the C# declaration has the manifest's value, else why not.</summary>
    private static string? Check(AbiProbeEntry e)
    {
        (Type? type, string? member) = Resolve(e.Target!);
        if (type is null)
        {
            return "no such C# type in Tapdisk.Abi";
        }

        long actual;
        switch (e.Kind)
        {
            case AbiProbeKind.SizeOf:
                if (member is not null || !type.IsValueType)
                {
                    return "sizeof needs a struct as its target";
                }

                actual = Marshal.SizeOf(type);
                break;
            case AbiProbeKind.OffsetOf:
            case AbiProbeKind.FieldSize:
                FieldInfo? field = member is null ? null : type.GetField(member, AllInstance);
                if (field is null)
                {
                    return "no such instance field";
                }

                actual = e.Kind == AbiProbeKind.OffsetOf ? Marshal.OffsetOf(type, field.Name).ToInt64() : RuntimeHelpers.SizeOf(field.FieldType.TypeHandle);
                break;
            default:
                FieldInfo? constant = member is null ? null : type.GetField(member, AllStatic);
                if (constant is null || !constant.IsLiteral)
                {
                    return "no such constant or enum member";
                }

                actual = ToInt64(constant.GetRawConstantValue());
                break;
        }

        return actual == e.Value ? null : $"manifest says {e.ValueText}, C# says {AbiProbeEntry.FormatValue(actual)}";
    }

    /// <summary>Splits "Interop.Libc.Stat.Mode" into the longest prefix that names a type and the member after it.</summary>
    private static (Type? Type, string? Member) Resolve(string target)
    {
        string[] parts = target.Split('.');
        for (int n = parts.Length; n >= 1; n--)
        {
            Type? type = s_abi.GetType(Namespace + "." + string.Join('+', parts[..n]));
            if (type is not null)
            {
                return (parts.Length - n) switch
                {
                    0 => (type, null),
                    1 => (type, parts[^1]),
                    _ => (null, null),
                };
            }
        }

        return (null, null);
    }

    private static long ToInt64(object? value) => value switch
    {
        int v => v,
        uint v => v,
        long v => v,
        ulong v => checked((long)v),
        short v => v,
        ushort v => v,
        byte v => v,
        sbyte v => v,
        _ => throw new InvalidOperationException($"unsupported constant type {value?.GetType()}"),
    };
}
