using System.Buffers;
using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>Native memory aligned for O_DIRECT, exposed as <see cref="Memory{T}"/>; zeroed on allocation.</summary>
public sealed unsafe class AlignedMemory : MemoryManager<byte>
{
    /// <summary>
    /// From this size a buffer is its own anonymous mapping, unmapped when disposed: its pages go back to the kernel
    /// at once. (glibc raises its mmap threshold each time it frees a mapped chunk, so later big buffers would come
    /// from its heap and keep their pages after the pool lets them go.)
    /// </summary>
    public const int MappedFromBytes = 1024 * 1024;

    private byte* _pointer;
    private readonly int _length;
    private readonly bool _mapped;

    public AlignedMemory(int length, int alignment = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        _length = length;
        if (length >= MappedFromBytes && alignment <= Environment.SystemPageSize)
        {
            // Anonymous mappings are page-aligned and zero-filled.
            void* address = Interop.Libc.Mmap(null, (nuint)length, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS, -1, 0);
            if (address == (void*)-1)
            {
                throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, $"mmap of a {length}-byte buffer");
            }

            _pointer = (byte*)address;
            _mapped = true;
            return;
        }

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
        if (p == null)
        {
            return;
        }

        if (_mapped)
        {
            _ = Interop.Libc.Munmap(p, (nuint)_length);
        }
        else
        {
            NativeMemory.AlignedFree(p);
        }
    }
}
