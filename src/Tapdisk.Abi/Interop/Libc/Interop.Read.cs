using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps read(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "read", SetLastError = true)]
        internal static partial nint Read(SafeFdHandle fd, byte* buffer, nuint count);
    }
}
