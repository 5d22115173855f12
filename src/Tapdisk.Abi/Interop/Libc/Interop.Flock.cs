using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int LOCK_SH = 1;
        internal const int LOCK_EX = 2;
        internal const int LOCK_NB = 4;

        /// <summary>Wraps flock(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "flock", SetLastError = true)]
        internal static partial int Flock(SafeFdHandle fd, int operation);
    }
}
