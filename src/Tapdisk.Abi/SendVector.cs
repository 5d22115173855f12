using System.Buffers;
using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// Buffers that leave in order through sendmsg(2) without being copied first: reply headers and the requests' own
/// data buffers, many replies per send, so a pass of completed reads wakes the peer once. Each buffer stays pinned
/// while listed. A partial send resumes where it stopped. One sender at a time.
/// </summary>
public sealed unsafe class SendVector : IDisposable
{
    private readonly int _capacity;
    private readonly MemoryHandle[] _pins;
    private Interop.Libc.IoVec* _iov;
    private int _count;
    private int _first;
    private long _pending;

    /// <param name="capacity">Buffers listed at most (sendmsg takes up to IOV_MAX, 1024).</param>
    public SendVector(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1024);
        _capacity = capacity;
        _pins = new MemoryHandle[capacity];
        _iov = (Interop.Libc.IoVec*)NativeMemory.Alloc((nuint)capacity, (nuint)sizeof(Interop.Libc.IoVec));
    }

    /// <summary>No room for another buffer: send first.</summary>
    public bool IsFull => _count == _capacity;

    /// <summary>Bytes listed and not sent yet.</summary>
    public long PendingBytes => _pending;

    /// <summary>Lists <paramref name="data"/> after what is listed, pinned until sent or cleared; empty buffers are skipped.</summary>
    public void Add(ReadOnlyMemory<byte> data)
    {
        ObjectDisposedException.ThrowIf(_iov == null, this);
        if (data.IsEmpty)
        {
            return;
        }

        if (IsFull)
        {
            throw new InvalidOperationException("the send vector is full");
        }

        List(data.Pin(), data.Length);
    }

    /// <summary>
    /// Lists two buffers (a header and its payload) or, when either cannot be pinned, neither: a header must never
    /// leave without its payload.
    /// </summary>
    public void Add(ReadOnlyMemory<byte> first, ReadOnlyMemory<byte> second)
    {
        ObjectDisposedException.ThrowIf(_iov == null, this);
        if (_capacity - _count < (first.IsEmpty ? 0 : 1) + (second.IsEmpty ? 0 : 1))
        {
            throw new InvalidOperationException("the send vector is full");
        }

        MemoryHandle pin = second.Pin();
        try
        {
            Add(first);
        }
        catch
        {
            pin.Dispose();
            throw;
        }

        if (!second.IsEmpty)
        {
            List(pin, second.Length);
        }
        else
        {
            pin.Dispose();
        }
    }

    /// <summary>Lists a pinned buffer of <paramref name="length"/> bytes after what is listed; the pin is released by <see cref="Clear"/>.</summary>
    private void List(MemoryHandle pin, int length)
    {
        _iov[_count] = new Interop.Libc.IoVec { Base = pin.Pointer, Length = (nuint)length };
        _pins[_count++] = pin;
        _pending += length;
    }

    /// <summary>
    /// One sendmsg of what is left (blocking unless the descriptor is non-blocking or <paramref name="dontWait"/>;
    /// SIGPIPE suppressed). Returns the byte count, after which the rest is what is left, or -1 with
    /// <paramref name="errno"/> set (EAGAIN: the socket had no room, or on a blocking socket its SO_SNDTIMEO ran out
    /// with nothing sent). Sent buffers are unpinned by <see cref="Clear"/>.
    /// </summary>
    public nint SendOnce(SafeHandle socket, out int errno, bool dontWait = false)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ObjectDisposedException.ThrowIf(_iov == null, this);
        errno = 0;
        if (_pending == 0)
        {
            return 0;
        }

        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            var header = new Interop.Libc.MsgHdr { Iov = _iov + _first, IovLength = (nuint)(_count - _first) };
            int flags = Interop.Libc.MSG_NOSIGNAL | (dontWait ? Interop.Libc.MSG_DONTWAIT : 0);
            nint n = Interop.Libc.SendMsg(socket.DangerousGetHandle(), &header, flags);
            if (n < 0)
            {
                errno = Marshal.GetLastPInvokeError();
                return n;
            }

            Consume(n);
            return n;
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Sends everything listed (resuming after partial sends, retrying EINTR), then forgets it, sent or not. Returns 0,
    /// or the errno of the send that failed (EAGAIN on a blocking socket: its SO_SNDTIMEO ran out with nothing sent).
    /// </summary>
    public int SendAll(SafeHandle socket)
    {
        try
        {
            while (_pending > 0)
            {
                if (SendOnce(socket, out int errno) < 0 && errno != Errno.EINTR)
                {
                    return errno;
                }
            }

            return 0;
        }
        finally
        {
            Clear();
        }
    }

    /// <summary>Unpins and forgets every listed buffer, sent or not.</summary>
    public void Clear()
    {
        for (int i = 0; i < _count; i++)
        {
            _pins[i].Dispose();
            _pins[i] = default;
        }

        _count = 0;
        _first = 0;
        _pending = 0;
    }

    public void Dispose()
    {
        if (_iov == null)
        {
            return;
        }

        Clear();
        NativeMemory.Free(_iov);
        _iov = null;
    }

    /// <summary>Skips the first <paramref name="sent"/> pending bytes: whole entries, then into the one cut short.</summary>
    private void Consume(nint sent)
    {
        _pending -= sent;
        while (sent > 0)
        {
            Interop.Libc.IoVec* entry = _iov + _first;
            if ((nuint)sent < entry->Length)
            {
                entry->Base = (byte*)entry->Base + sent;
                entry->Length -= (nuint)sent;
                return;
            }

            sent -= (nint)entry->Length;
            _first++;
        }
    }
}
