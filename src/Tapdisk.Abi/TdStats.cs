using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

/// <summary>
/// <c>struct stats</c>: the 96-byte page blktap publishes per VDI, per NBD server and per ring in /dev/shm/td3-&lt;pid&gt;
/// (control-xen.md 1). Offsets are checked by native/abi-probes/blktap-stats.probe. Times are microseconds.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct TdStats
{
    public uint Version;
    public ulong OoReqs;
    public ulong ReadReqsSubmitted;
    public ulong ReadReqsCompleted;
    public ulong ReadSectors;
    public ulong ReadTotalTicks;
    public ulong WriteReqsSubmitted;
    public ulong WriteReqsCompleted;
    public ulong WriteSectors;
    public ulong WriteTotalTicks;
    public ulong IoErrors;
    public ulong Flags;

    /// <summary>The version blktap writes into the vbd-&lt;domid&gt;-&lt;devid&gt; pages (xentop requires it).</summary>
    public const uint VbdVersion = 1;
}
