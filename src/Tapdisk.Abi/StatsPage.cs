using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// One page of a /dev/shm file that other processes (xcp-rrdd, xentop) map and read while we count into it, as blktap
/// publishes its statistics (control-xen.md 1). <see cref="Remove"/> deletes the file at once; the mapping itself is
/// released only by the finalizer, once no request can still hold this object, so a late completion after a close
/// counts into memory nobody reads instead of into an unmapped page.
/// </summary>
public abstract unsafe class StatsPage
{
    public const int Size = 4096;

    private readonly byte* _base;
    private int _removed;

    protected StatsPage(string path, string? temporaryPath)
    {
        string createdAt = temporaryPath ?? path;
        using SafeFdHandle fd = PosixFile.Open(createdAt, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Truncate, 0x180 /* 0600 */);
        PosixFile.Truncate(fd, Size, createdAt);
        void* mapped = Interop.Libc.Mmap(null, Size, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_SHARED, fd.Fd, 0);
        if (mapped == (void*)-1)
        {
            int errno = Marshal.GetLastPInvokeError();
            File.Delete(createdAt);
            throw new ErrnoIOException(errno, createdAt, "mmap");
        }

        _base = (byte*)mapped;
        _file = createdAt;
        Path = path;
    }

    /// <summary>Where the page is published (after <see cref="Publish"/> when it was prepared under a temporary name).</summary>
    public string Path { get; }

    /// <summary>The file as it is named now: the temporary name until <see cref="Publish"/>.</summary>
    protected string CurrentFile => Volatile.Read(ref _file);

    private string _file;

    /// <summary>Renames a page prepared under its temporary name to its final one, so readers never see it half-written (blktap's io_ring~).</summary>
    protected void Publish()
    {
        if (!string.Equals(_file, Path, StringComparison.Ordinal))
        {
            File.Move(_file, Path, overwrite: true);
            Volatile.Write(ref _file, Path);
        }
    }

    /// <summary>Adds to a counter with one atomic instruction: no lock, no allocation (request hot path).</summary>
    protected void Add(int offset, ulong value)
    {
        _ = Interlocked.Add(ref *(ulong*)Checked(offset), value);
        GC.KeepAlive(this);
    }

    /// <summary>Raises a maximum (a CAS loop that only retries while another thread raised it meanwhile).</summary>
    protected void Max(int offset, long value)
    {
        long* field = (long*)Checked(offset);
        long seen = Volatile.Read(ref *field);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref *field, value, seen);
            if (previous == seen)
            {
                break;
            }

            seen = previous;
        }

        GC.KeepAlive(this);
    }

    protected void Store(int offset, ulong value)
    {
        Volatile.Write(ref *(ulong*)Checked(offset), value);
        GC.KeepAlive(this);
    }

    protected void Store32(int offset, uint value)
    {
        Volatile.Write(ref *(uint*)Checked(offset), value);
        GC.KeepAlive(this);
    }

    /// <summary>Copies the page's first bytes (a reader's view; tests).</summary>
    protected T Read<T>()
        where T : unmanaged
    {
        T value = *(T*)_base;
        GC.KeepAlive(this);
        return value;
    }

    /// <summary>Writes raw bytes at the start of the page (the io_ring text page).</summary>
    protected void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes.Length, Size);
        bytes.CopyTo(new Span<byte>(_base, Size));
        new Span<byte>(_base + bytes.Length, Size - bytes.Length).Clear();
        GC.KeepAlive(this);
    }

    private byte* Checked(int offset)
    {
        // Offsets come from our own struct layouts, never from outside: a bad one is a bug here.
        System.Diagnostics.Debug.Assert((uint)offset <= Size - sizeof(ulong) && offset % 4 == 0, "offset inside the page");
        return _base + offset;
    }

    /// <summary>Deletes the file (idempotent); counting into this object stays safe until it is collected. Not IDisposable on purpose: the mapping must outlive it.</summary>
    public void Remove()
    {
        if (Interlocked.Exchange(ref _removed, 1) == 0)
        {
            try
            {
                File.Delete(CurrentFile);
            }
            catch (IOException)
            {
                // Teardown: the directory went first (process exit removes td3-<pid> recursively); nothing to undo.
            }
        }
    }

    ~StatsPage()
    {
        _ = Interop.Libc.Munmap(_base, Size);
    }
}
