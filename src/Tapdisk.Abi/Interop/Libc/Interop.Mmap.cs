using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        internal const int PROT_NONE = 0x0;
        internal const int PROT_READ = 0x1;
        internal const int PROT_WRITE = 0x2;
        internal const int MAP_SHARED = 0x01;
        internal const int MAP_PRIVATE = 0x02;
        internal const int MAP_FIXED = 0x10;
        internal const int MAP_ANONYMOUS = 0x20;
        internal const int MAP_POPULATE = 0x8000;

        /// <summary>Wraps mmap(2); returns MAP_FAILED ((void*)-1) on error.</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "mmap", SetLastError = true)]
        internal static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, long offset);

        /// <summary>Wraps munmap(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "munmap", SetLastError = true)]
        internal static partial int Munmap(void* address, nuint length);
    }
}
