using System.Security.Cryptography;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>
/// Raw key material for an encrypted VHD, held in a pinned array (the GC never leaves copies behind) and zeroed on
/// dispose. Never printed: <see cref="ToString"/> says only the size.
/// </summary>
public sealed class VhdKey : IDisposable
{
    /// <summary>The largest key the control socket carries (control-xen.md 2.5).</summary>
    public const int MaxLength = 128;

    private readonly byte[] _bytes;
    private int _disposed;

    public VhdKey(ReadOnlySpan<byte> key)
    {
        if (key.IsEmpty || key.Length > MaxLength)
        {
            throw new ArgumentException($"a key must be 1..{MaxLength} bytes, not {key.Length}", nameof(key));
        }

        _bytes = GC.AllocateUninitializedArray<byte>(key.Length, pinned: true);
        key.CopyTo(_bytes);
    }

    public int Length => _bytes.Length;

    /// <summary>The key bytes; valid until disposal.</summary>
    internal ReadOnlySpan<byte> Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            return _bytes;
        }
    }

    /// <summary>Reads a raw key file (OpenXT key directory, vhd-util -k), wiping the read buffer afterwards.</summary>
    public static VhdKey ReadFile(string path)
    {
        byte[] buffer = GC.AllocateUninitializedArray<byte>(MaxLength + 1, pinned: true);
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            int total = 0;
            int n;
            while (total < buffer.Length && (n = file.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += n;
            }

            if (total is 0 or > MaxLength)
            {
                throw new InvalidDataException($"key file {path} holds {(total > MaxLength ? "more than " + MaxLength : "0")} bytes");
            }

            return new VhdKey(buffer.AsSpan(0, total));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    /// <summary>SHA-256(nonce ‖ key): the keyhash this key gives with <paramref name="nonce"/>.</summary>
    public byte[] ComputeKeyhash(ReadOnlySpan<byte> nonce) => VhdKeyhash.Compute(nonce, Bytes);

    /// <summary>An independent copy (for example, one per VBD reopen), zeroed separately.</summary>
    public VhdKey Clone() => new(Bytes);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            CryptographicOperations.ZeroMemory(_bytes);
        }
    }

    public override string ToString() => $"VhdKey({Length * 8} bits, redacted)";
}
