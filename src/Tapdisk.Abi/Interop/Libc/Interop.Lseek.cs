using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int SEEK_SET = 0;
        internal const int SEEK_END = 2;
        internal const int SEEK_DATA = 3;
        internal const int SEEK_HOLE = 4;

        /// <summary>Wraps lseek(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "lseek", SetLastError = true)]
        internal static partial long Lseek(SafeFdHandle fd, long offset, int whence);
    }
}
