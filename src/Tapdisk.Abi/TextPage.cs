namespace Tapdisk.Abi;

/// <summary>A page holding text that is rewritten now and then (/dev/shm/vbd3-&lt;domid&gt;-&lt;devid&gt;/io_ring).</summary>
public sealed class TextPage : StatsPage
{
    public TextPage(string path, string? temporaryPath = null)
        : base(path, temporaryPath)
    {
    }

    /// <summary>Replaces the page's content (the rest of the page is zeroed).</summary>
    public void Write(ReadOnlySpan<byte> content) => WriteBytes(content);
}
