using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libcrypto
    {
        /// <summary>Wraps EVP_CIPHER_CTX_new(3).</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_CIPHER_CTX_new")]
        internal static partial SafeEvpCipherCtxHandle EvpCipherCtxNew();

        /// <summary>Wraps EVP_CIPHER_CTX_free(3); OpenSSL cleanses the key schedule before freeing.</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_CIPHER_CTX_free")]
        internal static partial void EvpCipherCtxFree(nint ctx);
    }
}
