using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// The right to poll, shared by every tapdisk on the host: blktap runs one process per VBD, so a cap per process
/// would let twenty busy disks keep twenty CPUs polling in a dom0 that has four. A page in /dev/shm holds one word per
/// slot (each on its own cache line) naming the process whose loop polls in it, by pid and start time (0: free); a
/// loop takes a slot for one poll and gives it back. A slot left by a process that died (kill -9 mid-poll) is taken
/// back once no process with that pid and start time exists, so a reused pid does not keep it. The page must be a
/// regular file of this user that nobody else may write (it is not followed through a symbolic link); where it is
/// not, or cannot be mapped, the cap holds for this process alone.
/// </summary>
public sealed class PollSlots : IDisposable
{
    /// <summary>The host's table: half the CPUs, so polling never takes the CPU a client, a disk's completion or another VBD needs.</summary>
    public const string HostPath = "/dev/shm/tapdisk-poll-slots";

    private const int PageBytes = 4096;
    private const int SlotStride = 64;
    private const int StaleCheckEvery = 64;
    private const uint GroupOrOtherWrite = 0x12; // 0o022
    private static readonly Lazy<PollSlots> s_host = new(() => Open(HostPath, Environment.ProcessorCount / 2));

    private readonly SharedFileMapping? _page;
    private readonly ulong _self = Identity(Environment.ProcessId, ProcessControl.StartTime(Environment.ProcessId));
    private int _taken;
    private int _failures;

    private PollSlots(SharedFileMapping? page, int count)
    {
        _page = page;
        Count = count;
    }

    /// <summary>The table every loop of this process uses.</summary>
    public static PollSlots Host => s_host.Value;

    /// <summary>How many loops may poll at once.</summary>
    public int Count { get; }

    /// <summary>True if the table is shared with other processes (the page is mapped).</summary>
    public bool IsShared => _page is not null;

    /// <summary>Opens (creating it if needed) the table at <paramref name="path"/> with <paramref name="count"/> slots (at most 64).</summary>
    public static PollSlots Open(string path, int count)
    {
        count = Math.Clamp(count, 0, PageBytes / SlotStride);
        if (count == 0)
        {
            return new PollSlots(null, 0);
        }

        if (PosixFile.TryOpen(path, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.NoFollow | OpenFlags.CloseOnExec, 0x180 /* 0600 */, out SafeFdHandle fd) != 0)
        {
            fd.Dispose();
            return new PollSlots(null, count);
        }

        using (fd)
        {
            try
            {
                FileStatus status = PosixFile.Stat(fd, path);
                if (!status.IsRegularFile || status.OwnerUid != ProcessControl.EffectiveUserId || (status.Permissions & GroupOrOtherWrite) != 0)
                {
                    // Someone else's page (or one others may write) could hold every slot or point elsewhere: not ours to trust.
                    return new PollSlots(null, count);
                }

                // Every process sizes it the same, so a second truncate changes nothing another already wrote.
                if (status.Size < PageBytes)
                {
                    PosixFile.Truncate(fd, PageBytes, path);
                }

                return new PollSlots(SharedFileMapping.Map(fd, PageBytes, path), count);
            }
            catch (IOException)
            {
                return new PollSlots(null, count);
            }
        }
    }

    /// <summary>
    /// Takes a free slot into <paramref name="slot"/>, trying the one given first (the caller's last); false when all
    /// are taken.
    /// </summary>
    public bool TryTake(ref int slot)
    {
        if (Count == 0)
        {
            return false;
        }

        if (_page is null)
        {
            if (Interlocked.Increment(ref _taken) <= Count)
            {
                slot = 0;
                return true;
            }

            Interlocked.Decrement(ref _taken);
            return false;
        }

        int first = (uint)slot < (uint)Count ? slot : 0;
        for (int i = 0; i < Count; i++)
        {
            int candidate = (first + i) % Count;
            if (_page.ReadUInt64(candidate * SlotStride) == 0 && _page.CompareExchangeUInt64(candidate * SlotStride, _self, 0) == 0)
            {
                slot = candidate;
                return true;
            }
        }

        // All taken. Now and then, look for slots whose process is gone (a read of /proc each, so not every time).
        if (Interlocked.Increment(ref _failures) % StaleCheckEvery == 0)
        {
            FreeStale();
        }

        return false;
    }

    /// <summary>Gives back a slot <see cref="TryTake"/> returned.</summary>
    public void Give(int slot)
    {
        if (_page is null)
        {
            Interlocked.Decrement(ref _taken);
            return;
        }

        _page.CompareExchangeUInt64(slot * SlotStride, 0, _self);
    }

    /// <summary>A slot's word for a process: pid in the low half, the low half of its start time in the high one.</summary>
    private static ulong Identity(int pid, long startTime) => (uint)pid | ((ulong)(uint)Math.Max(0, startTime) << 32);

    /// <summary>Frees every slot held by a process that no longer exists.</summary>
    private void FreeStale()
    {
        for (int i = 0; i < Count; i++)
        {
            ulong owner = _page!.ReadUInt64(i * SlotStride);
            if (owner == 0 || owner == _self)
            {
                continue;
            }

            int pid = (int)(uint)owner;
            long started = ProcessControl.StartTime(pid);
            if (started < 0 || Identity(pid, started) != owner)
            {
                _page.CompareExchangeUInt64(i * SlotStride, 0, owner);
            }
        }
    }

    public void Dispose() => _page?.Dispose();
}
