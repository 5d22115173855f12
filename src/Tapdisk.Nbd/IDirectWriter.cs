namespace Tapdisk.Nbd;

/// <summary>A transport that can send a caller's buffer without copying it into its PipeWriter first.</summary>
internal interface IDirectWriter
{
    /// <summary>Sends all of <paramref name="data"/> after whatever the PipeWriter has flushed; throws IOException on failure.</summary>
    void Write(ReadOnlySpan<byte> data);
}
