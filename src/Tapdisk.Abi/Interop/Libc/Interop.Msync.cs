using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        internal const int MS_SYNC = 0x4;

        /// <summary>Wraps msync(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "msync", SetLastError = true)]
        internal static partial int Msync(void* address, nuint length, int flags);
    }
}
