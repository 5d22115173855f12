using System.Runtime.InteropServices;

namespace Tapdisk.Tapback;

/// <summary>The <c>proto</c> field of XENBLKIF_CONNECT (blktap's BLKIF_PROTOCOL_*).</summary>
internal enum BlkifProtocol : uint
{
    Native = 1,
    X86_32 = 2,
    X86_64 = 3,
}

internal static class BlkifProtocols
{
    public const string X86_32Name = "x86_32-abi";
    public const string X86_64Name = "x86_64-abi";
    public const string ArmName = "arm-abi";

    /// <summary>
    /// Maps the frontend's <c>protocol</c> key. Absent means the backend's native ABI, as the Xen interface says; the
    /// reference assumes x86_32 instead (control-xen.md Part II 5.6 item 2), which we deliberately do not copy.
    /// </summary>
    public static bool TryMap(string? value, out BlkifProtocol protocol)
    {
        bool arm = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;
        switch (value)
        {
            case null:
                protocol = arm ? BlkifProtocol.Native : BlkifProtocol.X86_64;
                return true;
            case X86_32Name when !arm:
                protocol = BlkifProtocol.X86_32;
                return true;
            case X86_64Name when !arm:
                protocol = BlkifProtocol.X86_64;
                return true;
            case ArmName when arm:
                protocol = BlkifProtocol.Native;
                return true;
            default:
                protocol = default;
                return false;
        }
    }
}
