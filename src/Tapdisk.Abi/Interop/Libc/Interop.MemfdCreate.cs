using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const uint MFD_CLOEXEC = 0x1;

        /// <summary>Wraps memfd_create(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int MemfdCreate(string name, uint flags);
    }
}
