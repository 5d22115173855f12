using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps pwrite(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "pwrite", SetLastError = true)]
        internal static partial nint Pwrite(SafeFdHandle fd, byte* buffer, nuint count, long offset);
    }
}
