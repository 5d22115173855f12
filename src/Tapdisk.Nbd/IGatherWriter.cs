namespace Tapdisk.Nbd;

/// <summary>An output that can send a caller's buffer in place, without copying it into the PipeWriter first.</summary>
internal interface IGatherWriter
{
    /// <summary>
    /// Lists <paramref name="data"/> to be sent after the bytes written before it. The caller keeps the buffer
    /// unchanged until the next flush has returned (or failed) or <see cref="Discard"/>.
    /// </summary>
    void Append(ReadOnlyMemory<byte> data);

    /// <summary>Drops everything written or listed and not sent (after a failed send, before the buffers are reused).</summary>
    void Discard();
}
