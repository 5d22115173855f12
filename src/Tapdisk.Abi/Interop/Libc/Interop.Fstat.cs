using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        internal const uint S_IFMT = 0xF000;
        internal const uint S_IFBLK = 0x6000;
        internal const uint S_IFREG = 0x8000;

        /// <summary><c>struct stat</c> (x86-64 glibc); only the fields we read, at offsets the ABI probe checks.</summary>
        [StructLayout(LayoutKind.Explicit, Size = 144)]
        internal struct Stat
        {
            [FieldOffset(0)] public ulong Dev;
            [FieldOffset(8)] public ulong Ino;
            [FieldOffset(24)] public uint Mode;
            [FieldOffset(28)] public uint Uid;
            [FieldOffset(48)] public long Size;
            [FieldOffset(56)] public long BlkSize;
            [FieldOffset(64)] public long Blocks;
            [FieldOffset(88)] public long MtimeSec;
            [FieldOffset(96)] public long MtimeNsec;
            [FieldOffset(104)] public long CtimeSec;
            [FieldOffset(112)] public long CtimeNsec;
        }

        /// <summary>Wraps fstat(2).</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "fstat", SetLastError = true)]
        internal static partial int Fstat(SafeFdHandle fd, Stat* buf);
    }
}
