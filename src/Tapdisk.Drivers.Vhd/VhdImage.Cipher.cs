using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

public sealed partial class VhdImage
{
    // Bounce chunk for encrypted writes: the pool keeps buffers up to this size, so steady state allocates nothing.
    private const int CipherChunkBytes = AlignedBufferPool.MaxPooledBytes;

    private IVhdSectorCipher? _cipher;

    /// <summary>True once a cipher is attached: this layer's data sectors are stored encrypted.</summary>
    public bool IsEncrypted => Volatile.Read(ref _cipher) is not null;

    /// <summary>
    /// Attaches the layer's cipher (the image takes ownership and disposes it at close). Call before the image is
    /// shared. Fast zero and trim are dropped: a punched hole under set bitmap bits would decrypt to garbage.
    /// </summary>
    public void UseCipher(IVhdSectorCipher cipher)
    {
        ArgumentNullException.ThrowIfNull(cipher);
        if (Interlocked.CompareExchange(ref _cipher, cipher, null) is not null)
        {
            throw new InvalidOperationException($"{Path}: a cipher is already attached");
        }

        Capabilities &= ~(ImageCapabilities.FastZero | ImageCapabilities.Trim);
    }

    /// <summary>Reads sectors stored in this layer's file and decrypts them if the layer is encrypted.</summary>
    private void ReadOwn(long virtualOffsetBytes, long fileOffset, Span<byte> destination)
    {
        ReadLocal(fileOffset, destination);
        _cipher?.Decrypt(virtualOffsetBytes / VhdLayout.SectorSize, destination);
        Counters.CountRead(destination.Length);
    }

    /// <summary>Encrypts into pooled bounce buffers (the caller's buffer is never modified) and stores each chunk.</summary>
    private void WriteEncrypted(IVhdSectorCipher cipher, long offsetBytes, ReadOnlySpan<byte> source)
    {
        AlignedMemory bounce = AlignedBufferPool.Shared.Rent(Math.Min(source.Length, CipherChunkBytes));
        try
        {
            while (!source.IsEmpty)
            {
                int n = Math.Min(source.Length, Math.Min(bounce.Length, CipherChunkBytes));
                Span<byte> chunk = bounce.GetSpan()[..n];
                cipher.Encrypt(offsetBytes / VhdLayout.SectorSize, source[..n], chunk);
                WriteStored(offsetBytes, chunk);
                offsetBytes += n;
                source = source[n..];
            }
        }
        finally
        {
            AlignedBufferPool.Shared.Return(bounce);
        }
    }
}
