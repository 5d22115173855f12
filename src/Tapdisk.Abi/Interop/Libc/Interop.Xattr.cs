using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>Wraps fgetxattr(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial nint Fgetxattr(SafeFdHandle fd, string name, byte* value, nuint size);

        /// <summary>Wraps fsetxattr(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Fsetxattr(SafeFdHandle fd, string name, byte* value, nuint size, int flags);
    }
}
