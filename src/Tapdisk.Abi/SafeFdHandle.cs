using Microsoft.Win32.SafeHandles;

namespace Tapdisk.Abi;

/// <summary>Owns a Linux file descriptor.</summary>
public sealed class SafeFdHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeFdHandle()
        : base(ownsHandle: true)
    {
    }

    internal SafeFdHandle(int fd, bool ownsHandle)
        : base(ownsHandle)
    {
        SetHandle(fd);
    }

    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Interop.Libc.Close((int)handle) == 0;
}
