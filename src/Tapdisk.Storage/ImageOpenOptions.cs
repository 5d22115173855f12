namespace Tapdisk.Storage;

/// <summary>How to open an image; parents are always opened read-only with the rest of the child's options.</summary>
public sealed record ImageOpenOptions
{
    public static ImageOpenOptions ReadWrite { get; } = new();

    public static ImageOpenOptions ReadOnlyDefault { get; } = new() { ReadOnly = true };

    public bool ReadOnly { get; init; }

    /// <summary>O_DIRECT (the default, as blktap); falls back to buffered I/O where the file system refuses it.</summary>
    public bool DirectIo { get; init; } = true;

    /// <summary>Fsync data and zeroed bitmaps before a new VHD block's BAT entry is written (power-loss safety).</summary>
    public bool SafeAllocation { get; init; } = true;

    /// <summary>Canonical paths of the images above this one in the chain, leaf first (loop detection).</summary>
    public IReadOnlyList<string> ChildPaths { get; init; } = [];

    /// <summary>
    /// Wraps the leaf's parent once its driver has opened and checked it (a layer between the leaf and its parent,
    /// blktap's "bc"); drivers that open parents apply it to the first one only (it is not passed further down).
    /// </summary>
    public Func<IBlockImage, IBlockImage>? ParentFilter { get; init; }

    /// <summary>
    /// The leaf's parent, opened instead of the one its metadata names (tap-ctl -e: "nbd:" of the VBD serving the
    /// parent, control-xen.md 3.3). Only a format with a parent (a differencing VHD) uses it; it is not inherited.
    /// </summary>
    public ImageParams? ParentOverride { get; init; }

    /// <summary>Options for opening the parent of <paramref name="childPath"/>: read-only, everything else but the parent filter and override inherited.</summary>
    public ImageOpenOptions ForParentOf(string childPath) => this with { ReadOnly = true, ChildPaths = [.. ChildPaths, childPath], ParentFilter = null, ParentOverride = null };
}
