namespace Tapdisk.Storage;

/// <summary>
/// A layer that records which fixed-size units of the disk were written (blktap's CBT log): what a frontend may
/// publish as a dirty bitmap (NBD's qemu:dirty-bitmap:&lt;name&gt;). Found by walking a stack from the top.
/// </summary>
public interface IChangeTracker
{
    /// <summary>The bitmap's name as frontends publish it.</summary>
    string BitmapName { get; }

    /// <summary>Bytes per tracked unit (64 KiB for blktap's log).</summary>
    int UnitBytes { get; }

    /// <summary>Whether the unit holding bytes [unit * UnitBytes, (unit + 1) * UnitBytes) was written.</summary>
    bool IsMarked(long unit);

    /// <summary>The first change tracker in <paramref name="stack"/> (top down), or null.</summary>
    static IChangeTracker? Find(IBlockImage? stack)
    {
        for (IBlockImage? layer = stack; layer is not null; layer = layer.Parent)
        {
            if (layer is IChangeTracker tracker)
            {
                return tracker;
            }
        }

        return null;
    }
}
