using System.Security.Cryptography;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>
/// blktap's sector cipher (data-plane.md 4.1): AES-XTS per 512-byte sector, tweak = virtual sector as little-endian
/// u32 then zeros ("aes-xts-plain"); 32-byte key = AES-128-XTS, 64 = AES-256-XTS. Runs on OpenSSL's EVP XTS, which
/// measured faster than XTS built over .NET's AES-ECB (see VhdCryptoBenchmarks). OpenSSL contexts are not
/// thread-safe, so a small lock-free pool hands one encrypt/decrypt pair to each concurrent request.
/// </summary>
public sealed class AesXtsSectorCipher : IVhdSectorCipher
{
    private const int SectorSize = 512;
    private const int PoolSlots = 16;

    // A private pinned copy: contexts are created lazily as concurrency grows, and the copy is zeroed at dispose.
    private readonly byte[] _key;
    private readonly ContextPair?[] _pool = new ContextPair?[PoolSlots];
    private int _disposed;

    public AesXtsSectorCipher(VhdKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ReadOnlySpan<byte> bytes = key.Bytes;
        if (bytes.Length is not (32 or 64))
        {
            throw new ArgumentException($"AES-XTS keys are 32 or 64 bytes (AES-128/256), not {bytes.Length}", nameof(key));
        }

        // XTS with K1 == K2 loses its security argument; recent OpenSSL refuses it too (data-plane.md 4.1).
        int half = bytes.Length / 2;
        if (CryptographicOperations.FixedTimeEquals(bytes[..half], bytes[half..]))
        {
            throw new ArgumentException("the two halves of the AES-XTS key are equal", nameof(key));
        }

        _key = GC.AllocateUninitializedArray<byte>(bytes.Length, pinned: true);
        bytes.CopyTo(_key);

        // Key OpenSSL once now so a refused key fails the open, not the first I/O.
        _pool[0] = new ContextPair(_key);
    }

    public int KeyBits => _key.Length * 8 / 2;

    public void Encrypt(long firstSector, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        ContextPair pair = Rent();
        try
        {
            pair.Encryptor.TransformPlain((ulong)firstSector, plaintext, ciphertext, SectorSize);
        }
        finally
        {
            Return(pair);
        }
    }

    public void Decrypt(long firstSector, Span<byte> data)
    {
        ContextPair pair = Rent();
        try
        {
            pair.Decryptor.TransformPlain((ulong)firstSector, data, data, SectorSize);
        }
        finally
        {
            Return(pair);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        for (int i = 0; i < _pool.Length; i++)
        {
            Interlocked.Exchange(ref _pool[i], null)?.Dispose();
        }

        CryptographicOperations.ZeroMemory(_key);
    }

    public override string ToString() => $"AES-{KeyBits}-XTS sector cipher";

    private ContextPair Rent()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        for (int i = 0; i < _pool.Length; i++)
        {
            ContextPair? pair = Interlocked.Exchange(ref _pool[i], null);
            if (pair is not null)
            {
                return pair;
            }
        }

        // More requests in flight than pooled pairs: key another pair (allocates; steady state never gets here).
        return new ContextPair(_key);
    }

    private void Return(ContextPair pair)
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            for (int i = 0; i < _pool.Length; i++)
            {
                if (Interlocked.CompareExchange(ref _pool[i], pair, null) is null)
                {
                    // Dispose may have swept the pool between the check and the store: take it back out if so.
                    if (Volatile.Read(ref _disposed) != 0 && Interlocked.CompareExchange(ref _pool[i], null, pair) == pair)
                    {
                        pair.Dispose();
                    }

                    return;
                }
            }
        }

        pair.Dispose();
    }

    private sealed class ContextPair : IDisposable
    {
        public ContextPair(byte[] key)
        {
            Encryptor = new AesXtsTransform(key, encrypt: true);
            try
            {
                Decryptor = new AesXtsTransform(key, encrypt: false);
            }
            catch
            {
                Encryptor.Dispose();
                throw;
            }
        }

        public AesXtsTransform Encryptor { get; }

        public AesXtsTransform Decryptor { get; }

        public void Dispose()
        {
            Encryptor.Dispose();
            Decryptor.Dispose();
        }
    }
}
