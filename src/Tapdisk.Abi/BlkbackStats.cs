using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// <c>struct blkback_stats</c>: blktap's per-ring page /dev/shm/vbd3-&lt;domid&gt;-&lt;devid&gt;/statistics (control-xen.md
/// Part II 4.1), in blkback's terms. Offsets are checked by native/abi-probes/blktap-stats.probe. Times are microseconds.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct BlkbackStats
{
    public ulong DiscardRequests;      // st_ds_req
    public ulong FlushRequests;        // st_f_req
    public ulong OutOfRequests;        // st_oo_req
    public ulong ReadRequests;         // st_rd_req
    public long ReadCompleted;         // st_rd_cnt
    public ulong ReadSectors;          // st_rd_sect
    public long ReadSumMicroseconds;   // st_rd_sum_usecs
    public long ReadMaxMicroseconds;   // st_rd_max_usecs
    public ulong WriteRequests;        // st_wr_req
    public long WriteCompleted;        // st_wr_cnt
    public ulong WriteSectors;         // st_wr_sect
    public long WriteSumMicroseconds;  // st_wr_sum_usecs
    public long WriteMaxMicroseconds;  // st_wr_max_usecs
    public ulong Flags;
}
