using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>
/// The same sector cipher as <see cref="AesXtsSectorCipher"/>, built from .NET's AES-ECB plus the GF(2^128) tweak
/// doubling (data-plane.md 4.1). Not used for I/O: it is the independent cross-check in tests and the baseline the
/// OpenSSL path was chosen against in the benchmarks. Not thread-safe (it reuses scratch buffers).
/// </summary>
public sealed class AesXtsEcbReference : IDisposable
{
    private const int SectorSize = 512;
    private const int BlockSize = 16;

    private readonly Aes _dataKey;
    private readonly Aes _tweakKey;
    private byte[] _tweaks = [];
    private byte[] _scratch = [];

    public AesXtsEcbReference(ReadOnlySpan<byte> key)
    {
        if (key.Length is not (32 or 64))
        {
            throw new ArgumentException($"AES-XTS keys are 32 or 64 bytes, not {key.Length}", nameof(key));
        }

        int half = key.Length / 2;
        _dataKey = Aes.Create();
        _dataKey.Key = key[..half].ToArray();
        _tweakKey = Aes.Create();
        _tweakKey.Key = key[half..].ToArray();
    }

    public void Encrypt(long firstSector, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext) => Transform(firstSector, plaintext, ciphertext, encrypt: true);

    public void Decrypt(long firstSector, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext) => Transform(firstSector, ciphertext, plaintext, encrypt: false);

    public void Dispose()
    {
        _dataKey.Dispose();
        _tweakKey.Dispose();
        CryptographicOperations.ZeroMemory(_tweaks);
        CryptographicOperations.ZeroMemory(_scratch);
    }

    private void Transform(long firstSector, ReadOnlySpan<byte> input, Span<byte> output, bool encrypt)
    {
        if (input.Length % SectorSize != 0 || output.Length != input.Length)
        {
            throw new ArgumentException("whole 512-byte sectors only");
        }

        int sectors = input.Length / SectorSize;
        if (_tweaks.Length < input.Length)
        {
            _tweaks = new byte[input.Length];
            _scratch = new byte[input.Length];
        }

        Span<byte> tweaks = _tweaks.AsSpan(0, input.Length);
        Span<byte> scratch = _scratch.AsSpan(0, input.Length);

        // T0 of every sector in one ECB call: E_K2(u32 LE sector number, 12 zero bytes).
        Span<byte> initial = scratch[..(sectors * BlockSize)];
        initial.Clear();
        for (int s = 0; s < sectors; s++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(initial[(s * BlockSize)..], (uint)(firstSector + s));
        }

        _tweakKey.EncryptEcb(initial, initial, PaddingMode.None);
        for (int s = sectors - 1; s >= 0; s--)
        {
            // Backwards, so expanding sector s never overwrites T0 of a sector not yet expanded.
            UInt128 t = BinaryPrimitives.ReadUInt128LittleEndian(initial[(s * BlockSize)..]);
            Span<byte> sectorTweaks = tweaks.Slice(s * SectorSize, SectorSize);
            for (int j = 0; j < SectorSize / BlockSize; j++)
            {
                BinaryPrimitives.WriteUInt128LittleEndian(sectorTweaks[(j * BlockSize)..], t);
                bool carry = (t >> 127) != UInt128.Zero;
                t <<= 1;
                if (carry)
                {
                    t ^= 0x87;
                }
            }
        }

        Xor(input, tweaks, scratch);
        if (encrypt)
        {
            _dataKey.EncryptEcb(scratch, scratch, PaddingMode.None);
        }
        else
        {
            _dataKey.DecryptEcb(scratch, scratch, PaddingMode.None);
        }

        Xor(scratch, tweaks, output);
    }

    private static void Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= a.Length - Vector<byte>.Count; i += Vector<byte>.Count)
            {
                (new Vector<byte>(a[i..]) ^ new Vector<byte>(b[i..])).CopyTo(destination[i..]);
            }
        }

        for (; i < a.Length; i++)
        {
            destination[i] = (byte)(a[i] ^ b[i]);
        }
    }
}
