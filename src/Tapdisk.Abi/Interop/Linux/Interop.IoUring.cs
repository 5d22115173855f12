using System.Runtime.InteropServices;

namespace Tapdisk.Abi;

internal static unsafe partial class Interop
{
    /// <summary>
    /// io_uring (uapi linux/io_uring.h). glibc 2.36 has no wrappers and liburing is not a dependency, so the three
    /// system calls go through syscall(2) and the rings are mapped by hand (<see cref="Abi.IoUring"/>).
    /// </summary>
    internal static partial class IoUring
    {
        internal const long SYS_io_uring_setup = 425;
        internal const long SYS_io_uring_enter = 426;
        internal const long SYS_io_uring_register = 427;

        internal const uint IORING_SETUP_COOP_TASKRUN = 1U << 8;
        internal const uint IORING_SETUP_SINGLE_ISSUER = 1U << 12;
        internal const uint IORING_SETUP_DEFER_TASKRUN = 1U << 13;

        internal const uint IORING_FEAT_SINGLE_MMAP = 1U << 0;
        internal const uint IORING_FEAT_NODROP = 1U << 1;

        internal const long IORING_OFF_SQ_RING = 0;
        internal const long IORING_OFF_CQ_RING = 0x8000000;
        internal const long IORING_OFF_SQES = 0x10000000;

        internal const uint IORING_ENTER_GETEVENTS = 1U << 0;

        internal const uint IORING_REGISTER_BUFFERS2 = 15;
        internal const uint IORING_REGISTER_BUFFERS_UPDATE = 16;
        internal const uint IORING_RSRC_REGISTER_SPARSE = 1U << 0;

        internal const byte IORING_OP_NOP = 0;
        internal const byte IORING_OP_FSYNC = 3;
        internal const byte IORING_OP_READ_FIXED = 4;
        internal const byte IORING_OP_WRITE_FIXED = 5;
        internal const byte IORING_OP_POLL_ADD = 6;
        internal const byte IORING_OP_FALLOCATE = 17;
        internal const byte IORING_OP_READ = 22;
        internal const byte IORING_OP_WRITE = 23;
        internal const byte IORING_OP_SEND = 26;
        internal const byte IORING_OP_RECV = 27;

        internal const uint IORING_FSYNC_DATASYNC = 1U << 0;

        /// <summary><c>struct io_sqring_offsets</c>: where the submission ring's fields are in its mapping.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SqRingOffsets
        {
            public uint Head;
            public uint Tail;
            public uint RingMask;
            public uint RingEntries;
            public uint Flags;
            public uint Dropped;
            public uint Array;
            public uint Resv1;
            public ulong Resv2;
        }

        /// <summary><c>struct io_cqring_offsets</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct CqRingOffsets
        {
            public uint Head;
            public uint Tail;
            public uint RingMask;
            public uint RingEntries;
            public uint Overflow;
            public uint Cqes;
            public uint Flags;
            public uint Resv1;
            public ulong Resv2;
        }

        /// <summary><c>struct io_uring_params</c>: filled by io_uring_setup.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Params
        {
            public uint SqEntries;
            public uint CqEntries;
            public uint Flags;
            public uint SqThreadCpu;
            public uint SqThreadIdle;
            public uint Features;
            public uint WqFd;
            public uint Resv0;
            public uint Resv1;
            public uint Resv2;
            public SqRingOffsets SqOff;
            public CqRingOffsets CqOff;
        }

        /// <summary><c>struct io_uring_sqe</c>, the members a read, write, fsync, recv or poll uses (the rest are unions of these).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Sqe
        {
            public byte Opcode;
            public byte Flags;
            public ushort IoPrio;
            public int Fd;
            public ulong Off;
            public ulong Addr;
            public uint Len;
            public uint OpFlags;
            public ulong UserData;
            public ushort BufIndex;
            public ushort Personality;
            public int SpliceFdIn;
            public ulong Addr3;
            public ulong Pad2;
        }

        /// <summary><c>struct io_uring_rsrc_register</c>: IORING_REGISTER_BUFFERS2's argument (a sparse table: data 0).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct RsrcRegister
        {
            public uint Nr;
            public uint Flags;
            public ulong Resv2;
            public ulong Data;
            public ulong Tags;
        }

        /// <summary><c>struct io_uring_rsrc_update2</c>: IORING_REGISTER_BUFFERS_UPDATE's argument (iovecs from slot Offset on).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct RsrcUpdate2
        {
            public uint Offset;
            public uint Resv;
            public ulong Data;
            public ulong Tags;
            public uint Nr;
            public uint Resv2;
        }

        /// <summary><c>struct io_uring_cqe</c> (without the 32-byte CQE extension, which we never ask for).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Cqe
        {
            public ulong UserData;
            public int Res;
            public uint Flags;
        }

        // syscall(2) is variadic in C; on x86-64 its integer arguments travel in the same registers as a fixed
        // signature's, and glibc's implementation (assembly) reads none of the vector-count state a variadic call sets.
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Setup(long number, uint entries, Params* parameters);

        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Enter(long number, int fd, uint toSubmit, uint minComplete, uint flags, void* signalSet, nuint signalSetSize);

        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Register(long number, int fd, uint opcode, void* argument, uint argumentCount);
    }
}
