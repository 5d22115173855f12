namespace Tapdisk.Storage;

/// <summary>What a layer of a VBD's stack is (blktap's DISK_TYPE_FILTER flag; qemu's format vs filter nodes).</summary>
public enum LayerKind
{
    /// <summary>A format or protocol driver: it owns data (and its backing chain, through <see cref="IBlockImage.Parent"/>).</summary>
    Image,

    /// <summary>A filter: it wraps the next layer and changes only what it overrides (<see cref="BlockFilter"/>).</summary>
    Filter,
}
