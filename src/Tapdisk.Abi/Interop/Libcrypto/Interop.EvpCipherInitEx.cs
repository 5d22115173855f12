using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libcrypto
    {
        /// <summary>Wraps EVP_CipherInit_ex(3); null arguments keep the context's current cipher, key or IV; enc -1 keeps the direction.</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_CipherInit_ex")]
        internal static partial int EvpCipherInitEx(nint ctx, nint cipher, nint engine, byte* key, byte* iv, int enc);
    }
}
