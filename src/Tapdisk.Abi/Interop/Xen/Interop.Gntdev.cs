using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    /// <summary>The grant-table device <c>/dev/xen/gntdev</c> (uapi xen/gntdev.h; control-xen.md Part II 1).</summary>
    internal static partial class Gntdev
    {
        internal const uint IOCTL_GNTDEV_MAP_GRANT_REF = 0x00184700;
        internal const uint IOCTL_GNTDEV_UNMAP_GRANT_REF = 0x00104701;
        internal const uint IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR = 0x00184702;
        internal const uint IOCTL_GNTDEV_SET_MAX_GRANTS = 0x00044703;
        internal const uint IOCTL_GNTDEV_GRANT_COPY = 0x00104708;

        /// <summary><c>struct ioctl_gntdev_grant_ref</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct GrantRef
        {
            public uint Domid;
            public uint Ref;
        }

        /// <summary><c>struct ioctl_gntdev_map_grant_ref</c>; refs[count] really continues past the one declared entry.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct MapGrantRef
        {
            public uint Count;
            public uint Pad;
            public ulong Index;
            public GrantRef Refs;
        }

        /// <summary><c>struct ioctl_gntdev_unmap_grant_ref</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct UnmapGrantRef
        {
            public ulong Index;
            public uint Count;
            public uint Pad;
        }

        /// <summary><c>struct ioctl_gntdev_get_offset_for_vaddr</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct GetOffsetForVaddr
        {
            public ulong Vaddr;
            public ulong Offset;
            public uint Count;
            public uint Pad;
        }

        /// <summary><c>struct ioctl_gntdev_set_max_grants</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SetMaxGrants
        {
            public uint Count;
        }

        /// <summary><c>struct ioctl_gntdev_grant_copy</c>; segments points at pinned <see cref="GrantCopySegment"/>s.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct GrantCopy
        {
            public uint Count;
            public ulong Segments;
        }
    }
}
