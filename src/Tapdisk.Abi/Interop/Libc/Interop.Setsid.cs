using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps setsid(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "setsid", SetLastError = true)]
        internal static partial int Setsid();

        /// <summary>Wraps dup2(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "dup2", SetLastError = true)]
        internal static partial int Dup2(int oldFd, int newFd);
    }
}
