using Tapdisk.Storage;

namespace Tapdisk.Testing;

/// <summary>A test-only filter that counts the reads and writes passing through it and changes nothing else.</summary>
public sealed class CountingFilter : BlockFilter
{
    private long _reads;
    private long _writes;

    public CountingFilter(IBlockImage next)
        : base(next)
    {
    }

    public override string DriverName => "test-count";

    public long Reads => Interlocked.Read(ref _reads);

    public long Writes => Interlocked.Read(ref _writes);

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _reads);
        return base.ReadAsync(offsetBytes, destination, cancellationToken);
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _writes);
        return base.WriteAsync(offsetBytes, source, flags, cancellationToken);
    }
}
