using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libcrypto
    {
        /// <summary>Wraps EVP_CipherUpdate(3); for XTS one call is one whole data unit (no streaming).</summary>
        [LibraryImport(Libraries.Libcrypto, EntryPoint = "EVP_CipherUpdate")]
        internal static partial int EvpCipherUpdate(nint ctx, byte* output, int* outputLength, byte* input, int inputLength);
    }
}
