using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>_IOR(0x12, 114, size_t): device size in bytes.</summary>
        internal const uint BLKGETSIZE64 = 0x80081272;

        /// <summary>_IO(0x12, 104): logical sector size.</summary>
        internal const uint BLKSSZGET = 0x1268;

        /// <summary>Wraps ioctl(2) with a pointer argument.</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int Ioctl(SafeFdHandle fd, nuint request, void* arg);
    }
}
