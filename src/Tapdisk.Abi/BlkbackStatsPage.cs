namespace Tapdisk.Abi;

/// <summary>A published <see cref="BlkbackStats"/> page (/dev/shm/vbd3-&lt;domid&gt;-&lt;devid&gt;/statistics).</summary>
public sealed unsafe class BlkbackStatsPage : StatsPage
{
    private static readonly int s_discard;
    private static readonly int s_flush;
    private static readonly int s_readRequests;
    private static readonly int s_readCompleted;
    private static readonly int s_readSectors;
    private static readonly int s_readSum;
    private static readonly int s_readMax;
    private static readonly int s_writeRequests;
    private static readonly int s_writeCompleted;
    private static readonly int s_writeSectors;
    private static readonly int s_writeSum;
    private static readonly int s_writeMax;

    static BlkbackStatsPage()
    {
        // Offsets from the struct's own layout (checked against C by the probe), taken on a local: no magic numbers.
        BlkbackStats layout = default;
        byte* start = (byte*)&layout;
        s_discard = (int)((byte*)&layout.DiscardRequests - start);
        s_flush = (int)((byte*)&layout.FlushRequests - start);
        s_readRequests = (int)((byte*)&layout.ReadRequests - start);
        s_readCompleted = (int)((byte*)&layout.ReadCompleted - start);
        s_readSectors = (int)((byte*)&layout.ReadSectors - start);
        s_readSum = (int)((byte*)&layout.ReadSumMicroseconds - start);
        s_readMax = (int)((byte*)&layout.ReadMaxMicroseconds - start);
        s_writeRequests = (int)((byte*)&layout.WriteRequests - start);
        s_writeCompleted = (int)((byte*)&layout.WriteCompleted - start);
        s_writeSectors = (int)((byte*)&layout.WriteSectors - start);
        s_writeSum = (int)((byte*)&layout.WriteSumMicroseconds - start);
        s_writeMax = (int)((byte*)&layout.WriteMaxMicroseconds - start);
    }

    /// <param name="path">The final name.</param>
    /// <param name="temporaryPath">Where the page is prepared before it is renamed to <paramref name="path"/>; null to create it in place.</param>
    public BlkbackStatsPage(string path, string? temporaryPath = null)
        : base(path, temporaryPath)
    {
        Publish();
    }

    public void ReadReceived() => Add(s_readRequests, 1);

    public void WriteReceived() => Add(s_writeRequests, 1);

    public void FlushReceived() => Add(s_flush, 1);

    public void DiscardReceived() => Add(s_discard, 1);

    /// <summary>A read or write answered: counted, with its sectors and response time (sum and maximum, microseconds).</summary>
    public void Completed(bool write, long sectors, long microseconds)
    {
        Add(write ? s_writeCompleted : s_readCompleted, 1);
        Add(write ? s_writeSectors : s_readSectors, (ulong)sectors);
        Add(write ? s_writeSum : s_readSum, (ulong)Math.Max(0, microseconds));
        Max(write ? s_writeMax : s_readMax, microseconds);
    }

    public BlkbackStats Snapshot() => Read<BlkbackStats>();
}
