using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int EFD_NONBLOCK = 0x800;
        internal const int EFD_CLOEXEC = 0x80000;

        /// <summary>Wraps eventfd(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "eventfd", SetLastError = true)]
        internal static partial int Eventfd(uint initialValue, int flags);
    }
}
