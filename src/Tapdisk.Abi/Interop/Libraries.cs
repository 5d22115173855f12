namespace Tapdisk.Abi;

internal static partial class Interop
{
    /// <summary>Shared-object names for LibraryImport; the soname is less fragile than "libc".</summary>
    internal static class Libraries
    {
        internal const string Libc = "libc.so.6";

        /// <summary>OpenSSL 3; .NET's own System.Security.Cryptography loads the same library on Linux.</summary>
        internal const string Libcrypto = "libcrypto.so.3";
    }
}
