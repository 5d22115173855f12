namespace Tapdisk.Abi;

/// <summary>
/// One mmap(2)ed range. Offsets are checked against the length before a span is made; the pointer is cleared before
/// munmap so a use after Dispose throws instead of touching unmapped memory.
/// </summary>
public unsafe class MappedRegion : IDisposable
{
    private nint _address;
    private readonly int _length;
    private readonly Action? _onUnmapped;

    internal MappedRegion(void* address, int length, Action? onUnmapped = null)
    {
        _address = (nint)address;
        _length = length;
        _onUnmapped = onUnmapped;
    }

    public int Length => _length;

    /// <summary>The start of the mapping; throws after Dispose.</summary>
    public byte* Address
    {
        get
        {
            nint address = Volatile.Read(ref _address);
            ObjectDisposedException.ThrowIf(address == 0, this);
            return (byte*)address;
        }
    }

    public Span<byte> Span => new(Address, _length);

    /// <summary>A checked sub-range of the mapping.</summary>
    public Span<byte> Slice(int offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((ulong)(uint)offset + (uint)length, (ulong)_length, nameof(length));
        return new Span<byte>(Address + offset, length);
    }

    public void Dispose()
    {
        nint address = Interlocked.Exchange(ref _address, 0);
        if (address != 0)
        {
            // An munmap failure here can only mean a bad address or length, which we never hand out: nothing to do.
            _ = Interop.Libc.Munmap((void*)address, (nuint)_length);
            OnUnmapped();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Runs once, after munmap (gntdev needs its reservation released only then).</summary>
    protected virtual void OnUnmapped() => _onUnmapped?.Invoke();
}
