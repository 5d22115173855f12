using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static partial class Interop
{
    /// <summary>The event-channel device <c>/dev/xen/evtchn</c> (uapi xen/evtchn.h; control-xen.md Part II 2).</summary>
    internal static partial class Evtchn
    {
        internal const uint IOCTL_EVTCHN_BIND_INTERDOMAIN = 0x00084501;
        internal const uint IOCTL_EVTCHN_UNBIND = 0x00044503;
        internal const uint IOCTL_EVTCHN_NOTIFY = 0x00044504;
        internal const uint IOCTL_EVTCHN_RESET = 0x00004505;

        /// <summary><c>struct ioctl_evtchn_bind_interdomain</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct BindInterdomain
        {
            public uint RemoteDomain;
            public uint RemotePort;
        }

        /// <summary><c>struct ioctl_evtchn_unbind</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Unbind
        {
            public uint Port;
        }

        /// <summary><c>struct ioctl_evtchn_notify</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Notify
        {
            public uint Port;
        }
    }
}
