using Tapdisk.Storage;

namespace Tapdisk.Filters.Mirror;

/// <summary>One change (or flush) as a value, so it can be applied to either image without a closure per request.</summary>
internal readonly record struct Change(BlockOperation Operation, long OffsetBytes, long LengthBytes, ReadOnlyMemory<byte> Source, WriteFlags WriteFlags, ZeroFlags ZeroFlags)
{
    public ValueTask ApplyTo(IBlockImage image, CancellationToken cancellationToken) => Operation switch
    {
        BlockOperation.Write => image.WriteAsync(OffsetBytes, Source, WriteFlags, cancellationToken),
        BlockOperation.Trim => image.TrimAsync(OffsetBytes, LengthBytes, cancellationToken),
        BlockOperation.Zero => image.ZeroAsync(OffsetBytes, LengthBytes, ZeroFlags, cancellationToken),
        BlockOperation.Flush => image.FlushAsync(cancellationToken),
        _ => throw new InvalidOperationException($"{Operation} is not a change"),
    };
}
