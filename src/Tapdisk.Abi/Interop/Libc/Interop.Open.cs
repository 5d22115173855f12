using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps open(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Open(string path, int flags, int mode);
    }
}
