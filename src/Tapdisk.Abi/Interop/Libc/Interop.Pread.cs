using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps pread(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "pread", SetLastError = true)]
        internal static partial nint Pread(SafeFdHandle fd, byte* buffer, nuint count, long offset);
    }
}
