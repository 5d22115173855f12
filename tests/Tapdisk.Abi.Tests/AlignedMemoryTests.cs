using Xunit;

namespace Tapdisk.Abi.Tests;

public sealed class AlignedMemoryTests
{
    [Theory]
    [InlineData(512, 512)]
    [InlineData(4096, 4096)]
    [InlineData(3 * 4096, 4096)]
    [InlineData(100, 64)]
    public void Constructor_AnyLength_IsAlignedZeroedAndSized(int length, int alignment)
    {
        using var memory = new AlignedMemory(length, alignment);

        Span<byte> span = memory.GetSpan();

        Assert.Equal(length, span.Length);
        Assert.Equal(length, memory.Memory.Length);
        Assert.True(PosixFile.IsAligned(span, alignment));
        Assert.True(span.IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Memory_WritesThroughSpan_AreVisible()
    {
        using var memory = new AlignedMemory(4096);

        memory.Memory.Span[4095] = 0x5A;

        Assert.Equal(0x5A, memory.GetSpan()[4095]);
    }

    [Fact]
    public void Dispose_ThenGetSpan_ThrowsObjectDisposedException()
    {
        var memory = new AlignedMemory(4096);
        ((IDisposable)memory).Dispose();
        ((IDisposable)memory).Dispose();

        Assert.Throws<ObjectDisposedException>(() => memory.GetSpan());
        Assert.Throws<ObjectDisposedException>(() => memory.Pin());
    }

    [Fact]
    public void Constructor_ZeroLength_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedMemory(0));
    }
}
