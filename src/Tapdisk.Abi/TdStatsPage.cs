namespace Tapdisk.Abi;

/// <summary>A published <see cref="TdStats"/> page (vdi-, nbd-, nbd-old-, vbd- in /dev/shm/td3-&lt;pid&gt;).</summary>
public sealed unsafe class TdStatsPage : StatsPage
{
    private static readonly int s_readSubmitted;
    private static readonly int s_readCompleted;
    private static readonly int s_readSectors;
    private static readonly int s_readTicks;
    private static readonly int s_writeSubmitted;
    private static readonly int s_writeCompleted;
    private static readonly int s_writeSectors;
    private static readonly int s_writeTicks;
    private static readonly int s_ioErrors;

    static TdStatsPage()
    {
        // Offsets from the struct's own layout (checked against C by the probe), taken on a local: no magic numbers.
        TdStats layout = default;
        byte* start = (byte*)&layout;
        s_readSubmitted = (int)((byte*)&layout.ReadReqsSubmitted - start);
        s_readCompleted = (int)((byte*)&layout.ReadReqsCompleted - start);
        s_readSectors = (int)((byte*)&layout.ReadSectors - start);
        s_readTicks = (int)((byte*)&layout.ReadTotalTicks - start);
        s_writeSubmitted = (int)((byte*)&layout.WriteReqsSubmitted - start);
        s_writeCompleted = (int)((byte*)&layout.WriteReqsCompleted - start);
        s_writeSectors = (int)((byte*)&layout.WriteSectors - start);
        s_writeTicks = (int)((byte*)&layout.WriteTotalTicks - start);
        s_ioErrors = (int)((byte*)&layout.IoErrors - start);
    }

    /// <param name="path">The file to create (mode 0600), one page, zeroed.</param>
    /// <param name="version">0 for vdi and nbd pages (blktap leaves it zero), <see cref="TdStats.VbdVersion"/> for vbd pages.</param>
    public TdStatsPage(string path, uint version = 0)
        : base(path, temporaryPath: null)
    {
        if (version != 0)
        {
            Store32(0, version);
        }
    }

    /// <summary>A request taken in (before it runs).</summary>
    public void Submitted(bool write) => Add(write ? s_writeSubmitted : s_readSubmitted, 1);

    /// <summary>A request answered successfully: one more completed, its sectors and its time in microseconds.</summary>
    public void Completed(bool write, long sectors, long microseconds)
    {
        Add(write ? s_writeCompleted : s_readCompleted, 1);
        Add(write ? s_writeSectors : s_readSectors, (ulong)sectors);
        Add(write ? s_writeTicks : s_readTicks, (ulong)Math.Max(0, microseconds));
    }

    /// <summary>Sectors a request served without the image (the holes of a sparse read): counted, no request added.</summary>
    public void AddReadSectors(long sectors) => Add(s_readSectors, (ulong)sectors);

    public void Failed() => Add(s_ioErrors, 1);

    /// <summary>The counters as a reader sees them.</summary>
    public TdStats Snapshot() => Read<TdStats>();
}
