using System.Security.Cryptography;
using Tapdisk.Drivers.Vhd;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>blktap's keyhash (data-plane.md 1.9, 1.10): SHA-256(nonce ‖ key) with a 32-byte nonce; cookie 1 = present.</summary>
public sealed class VhdKeyhash
{
    public const int NonceSize = 32;
    public const int HashSize = 32;

    public VhdKeyhash(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> hash)
    {
        if (nonce.Length != NonceSize || hash.Length != HashSize)
        {
            throw new ArgumentException($"a keyhash has a {NonceSize}-byte nonce and a {HashSize}-byte hash");
        }

        Nonce = nonce.ToArray();
        Hash = hash.ToArray();
    }

    public byte[] Nonce { get; }

    public byte[] Hash { get; }

    /// <summary>
    /// The VHD's keyhash, from its batmap header or, for VHDs without one (qemu, fixed), from the extended attribute
    /// (data-plane.md 1.10); null if it has none (cookie not 1, attribute missing or unsupported).
    /// </summary>
    public static VhdKeyhash? Of(VhdImage image)
    {
        Span<byte> record = stackalloc byte[VhdExtendedAttributes.KeyhashRecordSize];
        image.ReadKeyhashRecord(record);
        return FromRecord(record);
    }

    /// <summary>Parses the raw 65-byte record (cookie, nonce, hash); null unless the cookie is 1.</summary>
    public static VhdKeyhash? FromRecord(ReadOnlySpan<byte> record) =>
        record[0] == 1 ? new VhdKeyhash(record.Slice(1, NonceSize), record.Slice(1 + NonceSize, HashSize)) : null;

    /// <summary>The raw 65-byte record with cookie 1.</summary>
    public void WriteRecord(Span<byte> record)
    {
        record[0] = 1;
        Nonce.CopyTo(record[1..]);
        Hash.CopyTo(record[(1 + NonceSize)..]);
    }

    /// <summary>SHA-256(nonce ‖ key) without concatenating the key into a new buffer.</summary>
    public static byte[] Compute(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> key)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(nonce);
        sha.AppendData(key);
        return sha.GetHashAndReset();
    }

    /// <summary>True if <paramref name="key"/> hashes to this keyhash (constant-time comparison).</summary>
    public bool Matches(VhdKey key) => Matches(key.Bytes);

    public bool Matches(ReadOnlySpan<byte> key) => CryptographicOperations.FixedTimeEquals(Compute(Nonce, key), Hash);

    public override string ToString() => $"{Convert.ToHexStringLower(Nonce)} {Convert.ToHexStringLower(Hash)}";
}
