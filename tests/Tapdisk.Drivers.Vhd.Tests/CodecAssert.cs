using System.Collections;
using System.Reflection;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Field-by-field equality of the format types (they are classes without value equality).</summary>
internal static class CodecAssert
{
    public static void SameFields<T>(T expected, T actual)
        where T : class
    {
        foreach (PropertyInfo p in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (!p.CanWrite || p.GetIndexParameters().Length != 0)
            {
                continue;
            }

            object? e = p.GetValue(expected);
            object? a = p.GetValue(actual);
            if (e is IEnumerable ee && a is IEnumerable ae)
            {
                Assert.True(ee.Cast<object>().SequenceEqual(ae.Cast<object>()), $"{typeof(T).Name}.{p.Name} differs after the round trip");
            }
            else
            {
                Assert.True(Equals(e, a), $"{typeof(T).Name}.{p.Name}: expected {e}, got {a}");
            }
        }
    }
}
