using System.Runtime.InteropServices;
using Tapdisk.Abi;
using Tapdisk.Blkif;

namespace Tapdisk.Testing.Xen;

/// <summary>
/// gntdev as the kernel behaves (control-xen.md 1.4, 1.5): a map is all-or-nothing (EINVAL for any bad ref, or for a
/// writable map of a read-only grant); grant copy rejects the whole call for a copy with no grant side or a foreign side
/// crossing its page (EINVAL), and otherwise reports each segment's GNTST code while returning 0.
/// </summary>
public sealed class FakeGrantDevice : IGrantDevice
{
    public const short GnttabGeneralError = -1;
    public const short GnttabBadDomain = -2;
    public const short GnttabBadGntref = -3;

#pragma warning disable IDE1006 // A thread static takes t_ (STYLE.md §3); the .editorconfig rules cannot tell it from s_ statics.
    [ThreadStatic]
    private static byte[]? t_bounce;
#pragma warning restore IDE1006

    private readonly FakeXen _xen;
    private int _liveMappings;
    private long _copyCalls;

    internal FakeGrantDevice(FakeXen xen)
    {
        _xen = xen;
    }

    public int LiveMappings => Volatile.Read(ref _liveMappings);

    public long CopyCalls => Interlocked.Read(ref _copyCalls);

    public MappedRegion MapGrantRefs(uint domid, ReadOnlySpan<uint> refs, bool writable)
    {
        if (refs.IsEmpty)
        {
            throw new ErrnoIOException(Errno.EINVAL, "fake gntdev", "IOCTL_GNTDEV_MAP_GRANT_REF");
        }

        int[] pages = new int[refs.Length];
        for (int i = 0; i < refs.Length; i++)
        {
            if (!_xen.TryGetGrant(refs[i], out FakeXen.Grant grant) || grant.Domid != domid || (writable && grant.ReadOnly))
            {
                throw new ErrnoIOException(Errno.EINVAL, "fake gntdev", "mmap of granted pages");
            }

            pages[i] = grant.Page;
        }

        Interlocked.Increment(ref _liveMappings);
        return _xen.Memory.MapPages(pages, writable, () => Interlocked.Decrement(ref _liveMappings));
    }

    public int GrantCopy(Span<GrantCopySegment> segments)
    {
        Interlocked.Increment(ref _copyCalls);
        foreach (ref readonly GrantCopySegment s in segments)
        {
            bool sourceGref = (s.Flags & GrantCopySegment.SourceGref) != 0;
            bool destGref = (s.Flags & GrantCopySegment.DestGref) != 0;
            if (!sourceGref && !destGref)
            {
                return Errno.EINVAL;
            }

            if ((sourceGref && s.SourceOffset + s.Len > FakeXen.PageSize) || (destGref && s.DestOffset + s.Len > FakeXen.PageSize))
            {
                return Errno.EINVAL;
            }

            if ((!sourceGref && s.SourceVirt < 4096) || (!destGref && s.DestVirt < 4096))
            {
                return Errno.EFAULT;
            }
        }

        byte[] bounce = t_bounce ??= new byte[FakeXen.PageSize];
        foreach (ref GrantCopySegment s in segments)
        {
            s.Status = 0;
            if (s.Len == 0)
            {
                continue;
            }

            bool sourceGref = (s.Flags & GrantCopySegment.SourceGref) != 0;
            bool destGref = (s.Flags & GrantCopySegment.DestGref) != 0;
            Span<byte> data = bounce.AsSpan(0, s.Len);
            if (sourceGref)
            {
                short status = Resolve(s.SourceRef, s.SourceDomid, write: false, out int page);
                if (status != 0)
                {
                    s.Status = status;
                    continue;
                }

                _xen.Page(page).Slice(s.SourceOffset, s.Len).CopyTo(data);
            }
            else
            {
                Marshal.Copy((nint)s.SourceVirt, bounce, 0, s.Len);
            }

            if (destGref)
            {
                short status = Resolve(s.DestRef, s.DestDomid, write: true, out int page);
                if (status != 0)
                {
                    s.Status = status;
                    continue;
                }

                data.CopyTo(_xen.Page(page).Slice(s.DestOffset, s.Len));
            }
            else
            {
                Marshal.Copy(bounce, 0, (nint)s.DestVirt, s.Len);
            }
        }

        return 0;
    }

    public void Dispose()
    {
    }

    private short Resolve(uint gref, ushort domid, bool write, out int page)
    {
        page = -1;
        if (!_xen.TryGetGrant(gref, out FakeXen.Grant grant))
        {
            return _xen.IsKnownDomain(domid) ? GnttabBadGntref : GnttabBadDomain;
        }

        if (grant.Domid != domid)
        {
            return _xen.IsKnownDomain(domid) ? GnttabBadGntref : GnttabBadDomain;
        }

        if (write && grant.ReadOnly)
        {
            return GnttabGeneralError; // What Xen 4.17 reports for a copy into a read-only grant [run].
        }

        page = grant.Page;
        return 0;
    }
}
