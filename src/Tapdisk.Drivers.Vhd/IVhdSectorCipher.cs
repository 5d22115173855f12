namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// A per-layer transform of guest data sectors (blktap's encrypted VHD, data-plane.md 4.2): only sectors stored in
/// this layer's own file pass through it; metadata, parents' data and zero fill never do. Must be thread-safe.
/// </summary>
public interface IVhdSectorCipher : IDisposable
{
    /// <summary>Encrypts whole sectors; <paramref name="firstSector"/> is the virtual sector number of the first.</summary>
    void Encrypt(long firstSector, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext);

    /// <summary>Decrypts whole sectors in place.</summary>
    void Decrypt(long firstSector, Span<byte> data);
}
