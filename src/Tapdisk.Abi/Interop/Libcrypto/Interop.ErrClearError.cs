using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libcrypto
    {
        /// <summary>Wraps ERR_clear_error(3): OpenSSL's error queue is per thread, so a failure must not leak into .NET's own crypto calls.</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "ERR_clear_error")]
        internal static partial void ErrClearError();
    }
}
