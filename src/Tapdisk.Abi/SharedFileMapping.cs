using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// The first bytes of a file mapped MAP_SHARED and writable: stores land in the page cache at once (visible to other
/// readers, kept across a kill of the process), and <see cref="Sync"/> makes a range durable with msync(MS_SYNC).
/// Word operations are atomic and take offsets that the caller keeps 8-byte aligned.
/// </summary>
public sealed unsafe class SharedFileMapping : MappedRegion
{
    private const int PageSize = 4096;

    private SharedFileMapping(void* address, int length)
        : base(address, length)
    {
    }

    /// <summary>
    /// Maps bytes [0, <paramref name="length"/>) of <paramref name="fd"/>, which must be open read-write. The length may
    /// run a few bytes past the end of the file within its last page (the kernel maps whole pages; stores there are
    /// dropped); a page wholly past the end would fault, so callers check the file's size first.
    /// </summary>
    public static SharedFileMapping Map(SafeFdHandle fd, int length, string? path = null)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        void* address = Interop.Libc.Mmap(null, (nuint)length, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_SHARED, fd.Fd, 0);
        if (address == (void*)-1)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), path, "mmap");
        }

        return new SharedFileMapping(address, length);
    }

    /// <summary>Reads the 8-byte word at <paramref name="offset"/> (little-endian on the machines we run on).</summary>
    public ulong ReadUInt64(int offset)
    {
        CheckWord(offset);
        return Volatile.Read(ref *(ulong*)(Address + offset));
    }

    /// <summary>Atomically ORs <paramref name="mask"/> into the word at <paramref name="offset"/>; true if a bit changed.</summary>
    public bool OrUInt64(int offset, ulong mask)
    {
        CheckWord(offset);
        ref ulong word = ref *(ulong*)(Address + offset);

        // Skip the locked operation (and dirtying the page) when every bit is already set: the common case under load.
        if ((Volatile.Read(ref word) & mask) == mask)
        {
            return false;
        }

        return (Interlocked.Or(ref word, mask) & mask) != mask;
    }

    /// <summary>Atomically replaces the word at <paramref name="offset"/> with <paramref name="value"/> if it holds <paramref name="comparand"/>; returns what it held.</summary>
    public ulong CompareExchangeUInt64(int offset, ulong value, ulong comparand)
    {
        CheckWord(offset);
        return Interlocked.CompareExchange(ref *(ulong*)(Address + offset), value, comparand);
    }

    /// <summary>msync(MS_SYNC) of the pages holding [offset, offset + length): durable when this returns.</summary>
    public void Sync(int offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((ulong)(uint)offset + (uint)length, (ulong)(uint)Length, nameof(length));
        long first = offset & ~(long)(PageSize - 1);
        long end = (long)offset + length;
        if (Interop.Libc.Msync(Address + first, (nuint)(end - first), Interop.Libc.MS_SYNC) != 0)
        {
            throw new ErrnoIOException(Marshal.GetLastPInvokeError(), null, "msync");
        }
    }

    private void CheckWord(int offset)
    {
        if ((offset & 7) != 0 || (uint)offset > (uint)(Length - sizeof(ulong)))
        {
            ThrowBadWord(offset);
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void ThrowBadWord(int offset) =>
        throw new ArgumentOutOfRangeException(nameof(offset), offset, $"not an aligned word inside the {Length}-byte mapping");
}
