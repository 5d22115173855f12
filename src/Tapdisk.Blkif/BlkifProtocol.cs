namespace Tapdisk.Blkif;

/// <summary>Ring ABI as the control message numbers it (blktap: 1 native, 2 x86_32, 3 x86_64; control-xen.md 5.8).</summary>
public enum BlkifProtocol
{
    /// <summary>The backend's own ABI: x86_64 on the only platform we build for.</summary>
    Native = 1,
    /// <summary>"x86_32-abi": 108-byte requests, 4-byte packing.</summary>
    X86 = 2,

    /// <summary>"x86_64-abi": the 112-byte layout.</summary>
    X64 = 3,
}
