namespace Tapdisk.Storage;

/// <summary>
/// What one layer of a chain served itself: tapdisk's per-image read hits, where a read a leaf passes down to its
/// parent counts on the parent (control-xen.md, stats). Thread-safe; a layer keeps it while it is open.
/// </summary>
public sealed class LayerCounters
{
    private long _readSectors;

    public long ReadSectors => Volatile.Read(ref _readSectors);

    public void CountRead(long lengthBytes) => Interlocked.Add(ref _readSectors, lengthBytes / IoLimits.SectorSize);
}
