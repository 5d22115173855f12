using System.Buffers;
using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>Native memory aligned for O_DIRECT, exposed as <see cref="Memory{T}"/>; zeroed on allocation.</summary>
public sealed unsafe class AlignedMemory : MemoryManager<byte>
{
    private byte* _pointer;
    private readonly int _length;

    public AlignedMemory(int length, int alignment = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        _length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, (nuint)alignment);
        NativeMemory.Clear(_pointer, (nuint)length);
    }

    public int Length => _length;

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return new Span<byte>(_pointer, _length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)_length);
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        byte* p = _pointer;
        _pointer = null;
        if (p != null)
        {
            NativeMemory.AlignedFree(p);
        }
    }
}
