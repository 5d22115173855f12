using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        internal const short POLLIN = 0x1;
        internal const short POLLERR = 0x8;
        internal const short POLLHUP = 0x10;

        /// <summary><c>struct pollfd</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct PollFd
        {
            public int Fd;
            public short Events;
            public short REvents;
        }

        /// <summary>Wraps poll(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "poll", SetLastError = true)]
        internal static partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);
    }
}
