using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps ftruncate(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "ftruncate", SetLastError = true)]
        internal static partial int Ftruncate(SafeFdHandle fd, long length);
    }
}
