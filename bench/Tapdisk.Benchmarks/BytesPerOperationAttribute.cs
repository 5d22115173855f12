namespace Tapdisk.Benchmarks;

/// <summary>How many bytes one operation of the benchmark moves; read by <see cref="ThroughputColumn"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class BytesPerOperationAttribute : Attribute
{
    public BytesPerOperationAttribute(int bytes)
    {
        Bytes = bytes;
    }

    public int Bytes { get; }
}
