namespace Tapdisk.Nbd;

/// <summary>A transport that can send a caller's buffer without copying it into its PipeWriter first.</summary>
internal interface IDirectWriter
{
    /// <summary>
    /// Sends all of <paramref name="header"/> then <paramref name="data"/> after whatever the PipeWriter has flushed,
    /// in as few sends as the socket allows; throws IOException on failure. A blocked send ends when
    /// <paramref name="cancellationToken"/> fires.
    /// </summary>
    void Write(ReadOnlySpan<byte> header, ReadOnlySpan<byte> data, CancellationToken cancellationToken);
}
