using Microsoft.Win32.SafeHandles;

namespace Tapdisk.Abi;

/// <summary>
/// A page holding text that is rewritten now and then (/dev/shm/vbd3-&lt;domid&gt;-&lt;devid&gt;/io_ring): created one page
/// long, then cut to the length of what it holds after each write, as blktap does, so readers see the text and no
/// trailing zeros. The mapping stays one page; only its tail past the end of the file goes unread.
/// </summary>
public sealed class TextPage : StatsPage
{
    /// <param name="path">The final name.</param>
    /// <param name="temporaryPath">Where the page is prepared and first written before it is renamed to <paramref name="path"/>; null to create it in place.</param>
    /// <param name="content">The first content, in place before the page appears under its final name.</param>
    public TextPage(string path, string? temporaryPath, ReadOnlySpan<byte> content)
        : base(path, temporaryPath)
    {
        Write(content);
        Publish();
    }

    /// <summary>Replaces the content (at most one page; the rest of the page is zeroed) and sets the file's length to it.</summary>
    public void Write(ReadOnlySpan<byte> content)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(content.Length, Size);

        // Length first, then bytes: what is stored past the end of a file is dropped when the file grows again. Cold
        // path (every few seconds), so a handle per update is fine; within the one mapped page a shorter file never
        // faults (SIGBUS is only for pages wholly past the end).
        using (SafeFileHandle file = File.OpenHandle(CurrentFile, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            RandomAccess.SetLength(file, content.Length);
        }

        WriteBytes(content);
    }
}
