using Microsoft.Win32.SafeHandles;

namespace Tapdisk.Abi;

/// <summary>Owns an OpenSSL <c>EVP_CIPHER_CTX</c>.</summary>
public sealed class SafeEvpCipherCtxHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeEvpCipherCtxHandle()
        : base(ownsHandle: true)
    {
    }

    protected override bool ReleaseHandle()
    {
        Interop.Libcrypto.EvpCipherCtxFree(handle);
        return true;
    }
}
