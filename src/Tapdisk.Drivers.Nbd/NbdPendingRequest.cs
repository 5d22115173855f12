using System.Threading.Tasks.Sources;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Nbd;

/// <summary>
/// One in-flight request slot, reused: its index and generation make the NBD handle, so a reply for a slot that was
/// answered already (or never sent) is recognised as an unknown handle. The receive thread never runs the awaiting
/// code itself, because that code may send the next request on this connection, and a sender blocked on a full socket
/// while the only reader waits for it would deadlock with a server that blocks on its replies. It hands the slot (no
/// allocation: the slot is the work item) to the I/O loop that sent the request, which runs what follows as it runs
/// its own completions, or to the thread pool when a thread without a loop sent it.
/// </summary>
internal sealed class NbdPendingRequest : IValueTaskSource, IThreadPoolWorkItem
{
    public const int Free = 0;
    public const int Pending = 1;
    public const int Completing = 2;

    private readonly NbdClientConnection _owner;
    private ManualResetValueTaskSourceCore<bool> _core;
    private Exception? _error;

    public NbdPendingRequest(NbdClientConnection owner, int index)
    {
        _owner = owner;
        Index = index;
    }

    public int Index { get; }

    /// <summary>Bumped each time the slot is taken; the high half of the handle.</summary>
    public uint Generation { get; set; }

    /// <summary>One of <see cref="Free"/>, <see cref="Pending"/>, <see cref="Completing"/>; changed under the connection's lock.</summary>
    public int State { get; set; }

    public ushort Command { get; set; }

    public long OffsetBytes { get; set; }

    public int LengthBytes { get; set; }

    /// <summary>Where a READ's payload goes.</summary>
    public Memory<byte> Destination { get; set; }

    /// <summary>The I/O loop of the thread that sent the request (null without one): where its completion runs.</summary>
    public IoLoop? Loop { get; set; }

    /// <summary>Stopwatch timestamp of the send, for the request timeout.</summary>
    public long SentTimestamp { get; set; }

    public ulong Handle => ((ulong)Generation << 32) | (uint)Index;

    public ValueTask AsValueTask() => new(this, _core.Version);

    /// <summary>Completes the awaiting request on the sender's loop, or on the thread pool.</summary>
    public void Complete(Exception? error)
    {
        _error = error;
        IoLoop? loop = Loop;
        Loop = null;
        if (loop is null || !loop.Post(this))
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        if (_error is null)
        {
            _core.SetResult(true);
        }
        else
        {
            _core.SetException(_error);
        }
    }

    public void GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _error = null;
            Destination = default;
            _core.Reset();
            _owner.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
