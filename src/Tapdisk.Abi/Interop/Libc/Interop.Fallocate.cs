using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int FALLOC_FL_KEEP_SIZE = 0x01;
        internal const int FALLOC_FL_PUNCH_HOLE = 0x02;
        internal const int FALLOC_FL_ZERO_RANGE = 0x10;

        /// <summary>Wraps fallocate(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fallocate", SetLastError = true)]
        internal static partial int Fallocate(SafeFdHandle fd, int mode, long offset, long length);
    }
}
