using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps fdatasync(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fdatasync", SetLastError = true)]
        internal static partial int Fdatasync(SafeFdHandle fd);

        /// <summary>Wraps fsync(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fsync", SetLastError = true)]
        internal static partial int Fsync(SafeFdHandle fd);
    }
}
