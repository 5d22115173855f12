using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libcrypto
    {
        /// <summary>Wraps EVP_aes_128_xts(3): a static cipher description, never freed.</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_aes_128_xts")]
        internal static partial nint EvpAes128Xts();

        /// <summary>Wraps EVP_aes_256_xts(3): a static cipher description, never freed.</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_aes_256_xts")]
        internal static partial nint EvpAes256Xts();
    }
}
