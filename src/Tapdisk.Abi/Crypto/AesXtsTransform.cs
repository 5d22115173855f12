using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Tapdisk.Abi;

/// <summary>
/// One direction of AES-XTS through OpenSSL's EVP (aes-128-xts for a 32-byte key, aes-256-xts for 64), keyed once.
/// Not thread-safe: an EVP context holds per-call state, so callers keep one per concurrent user.
/// </summary>
public sealed unsafe class AesXtsTransform : IDisposable
{
    public const int TweakSize = 16;

    private readonly SafeEvpCipherCtxHandle _ctx;

    public AesXtsTransform(ReadOnlySpan<byte> key, bool encrypt)
    {
        nint cipher = key.Length switch
        {
            32 => Interop.Libcrypto.EvpAes128Xts(),
            64 => Interop.Libcrypto.EvpAes256Xts(),
            _ => throw new ArgumentException($"AES-XTS needs a 32- or 64-byte key, not {key.Length} bytes", nameof(key)),
        };
        if (cipher == 0)
        {
            throw new CryptographicException("libcrypto has no AES-XTS cipher");
        }

        _ctx = Interop.Libcrypto.EvpCipherCtxNew();
        if (_ctx.IsInvalid)
        {
            _ctx.Dispose();
            throw new CryptographicException("EVP_CIPHER_CTX_new failed");
        }

        int ok;
        fixed (byte* k = key)
        {
            ok = Interop.Libcrypto.EvpCipherInitEx(_ctx.DangerousGetHandle(), cipher, 0, k, null, encrypt ? 1 : 0);
        }

        if (ok != 1)
        {
            // The key itself never goes into the message.
            Interop.Libcrypto.ErrClearError();
            _ctx.Dispose();
            throw new CryptographicException("OpenSSL refused the AES-XTS key (for example, equal halves)");
        }
    }

    /// <summary>
    /// Transforms consecutive data units of <paramref name="unitBytes"/> each, resetting the tweak per unit to dm-crypt's
    /// "plain" IV: the unit number modulo 2^32 as a little-endian u32, then 12 zero bytes. <paramref name="input"/>
    /// and <paramref name="output"/> may be the same memory.
    /// </summary>
    public void TransformPlain(ulong firstUnit, ReadOnlySpan<byte> input, Span<byte> output, int unitBytes)
    {
        if (input.Length != output.Length || unitBytes < 16 || input.Length % unitBytes != 0)
        {
            throw new ArgumentException($"AES-XTS input of {input.Length} bytes is not whole {unitBytes}-byte units or differs from the output");
        }

        byte* iv = stackalloc byte[TweakSize];
        new Span<byte>(iv, TweakSize).Clear();
        bool added = false;
        try
        {
            // One AddRef per batch rather than per OpenSSL call.
            _ctx.DangerousAddRef(ref added);
            nint ctx = _ctx.DangerousGetHandle();
            fixed (byte* src = input)
            fixed (byte* dst = output)
            {
                for (int offset = 0; offset < input.Length; offset += unitBytes)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(iv, 4), (uint)firstUnit);
                    int written;
                    if (Interop.Libcrypto.EvpCipherInitEx(ctx, 0, 0, null, iv, -1) != 1
                        || Interop.Libcrypto.EvpCipherUpdate(ctx, dst + offset, &written, src + offset, unitBytes) != 1
                        || written != unitBytes)
                    {
                        Interop.Libcrypto.ErrClearError();
                        throw new CryptographicException("OpenSSL AES-XTS transform failed");
                    }

                    firstUnit++;
                }
            }
        }
        finally
        {
            if (added)
            {
                _ctx.DangerousRelease();
            }
        }
    }

    public void Dispose() => _ctx.Dispose();
}
