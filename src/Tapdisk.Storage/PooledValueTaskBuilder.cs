using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace Tapdisk.Storage;

// The async method builder pattern is instance methods and a static Create on the (generic) builder type.
#pragma warning disable CA1822, CA1000

/// <summary>
/// The async method builder of the request hot paths: like <see cref="PoolingAsyncValueTaskMethodBuilder"/>, but its
/// state-machine boxes are pooled per thread with room for a ring's worth of requests. The runtime's builder keeps one
/// box per thread and one per core, so a loop thread with 32 requests suspended at once allocated 30 boxes a round.
/// A method using it must be awaited exactly once, as any pooled ValueTask.
/// </summary>
public struct PooledValueTaskBuilder
{
    // The generic builder does the work; a void method completes it with a result nobody reads.
    private PooledValueTaskBuilder<bool> _inner;

    public static PooledValueTaskBuilder Create() => default;

    public readonly ValueTask Task => _inner.UntypedTask;

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => _inner.Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
        // Only for boxing by the runtime's own builders; this one boxes itself.
    }

    public void SetResult() => _inner.SetResult(true);

    public void SetException(Exception exception) => _inner.SetException(exception);

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitOnCompleted(ref awaiter, ref stateMachine);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitUnsafeOnCompleted(ref awaiter, ref stateMachine);
}

/// <summary>
/// The return of a request's top-level call that nobody awaits, because its own code answers the request: the
/// builder gives the call's box back to its pool when the call ends. (<c>_ = valueTask.AsTask()</c> did the same
/// with a Task allocated per request.) A fault is rethrown on the thread pool, as an async void method's would be.
/// </summary>
[AsyncMethodBuilder(typeof(PooledDetachedBuilder))]
public readonly struct DetachedCall;

/// <summary>The builder of <see cref="DetachedCall"/> methods (boxes pooled as <see cref="PooledValueTaskBuilder"/>'s).</summary>
public struct PooledDetachedBuilder
{
    private PooledValueTaskBuilder<bool> _inner;

    public static PooledDetachedBuilder Create() => default;

    public readonly DetachedCall Task => default;

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => _inner.Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
        // Only for boxing by the runtime's own builders; this one boxes itself.
    }

    public void SetResult() => _inner.SetResult(true);

    public void SetException(Exception exception)
    {
        if (!_inner.HasBox)
        {
            // Faulted before its first suspension: nobody will ever look at it.
            PooledStateMachineBox<bool>.Rethrow(exception);
            return;
        }

        _inner.SetException(exception);
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.OnCompleted(_inner.DetachedBox(ref stateMachine).MoveNextAction);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.UnsafeOnCompleted(_inner.DetachedBox(ref stateMachine).MoveNextAction);
}

/// <summary><see cref="PooledValueTaskBuilder"/> for methods returning <see cref="ValueTask{TResult}"/>.</summary>
public struct PooledValueTaskBuilder<TResult>
{
    private PooledStateMachineBox<TResult>? _box;
    private Exception? _exception;
    private TResult _result;

    public static PooledValueTaskBuilder<TResult> Create() => default;

    public readonly ValueTask<TResult> Task =>
        _box is not null ? new ValueTask<TResult>(_box, _box.Version)
        : _exception is not null ? ValueTask.FromException<TResult>(_exception)
        : new ValueTask<TResult>(_result);

    /// <summary>The same completion as a <see cref="ValueTask"/> (for <see cref="PooledValueTaskBuilder"/>).</summary>
    internal readonly ValueTask UntypedTask =>
        _box is not null ? new ValueTask(_box, _box.Version)
        : _exception is not null ? ValueTask.FromException(_exception)
        : ValueTask.CompletedTask;

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => AsyncValueTaskMethodBuilder.Create().Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
        // Only for boxing by the runtime's own builders; this one boxes itself.
    }

    public void SetResult(TResult result)
    {
        if (_box is null)
        {
            _result = result;
        }
        else
        {
            _box.SetResult(result);
        }
    }

    public void SetException(Exception exception)
    {
        if (_box is null)
        {
            _exception = exception;
        }
        else
        {
            _box.SetException(exception);
        }
    }

    internal readonly bool HasBox => _box is not null;

    /// <summary>The box, rented at the first suspension with a continuation that returns it when the call completes.</summary>
    internal PooledStateMachineBox<TResult> DetachedBox<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine
    {
        bool first = _box is null;
        PooledStateMachineBox<TResult> box = PooledStateMachineBox<TResult>.For(ref _box, ref stateMachine);
        if (first)
        {
            box.ReturnWhenCompleted();
        }

        return box;
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.OnCompleted(PooledStateMachineBox<TResult>.For(ref _box, ref stateMachine).MoveNextAction);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.UnsafeOnCompleted(PooledStateMachineBox<TResult>.For(ref _box, ref stateMachine).MoveNextAction);
}

/// <summary>The completion source of one suspended call; a subclass holds the state machine.</summary>
public abstract class PooledStateMachineBox<TResult> : IValueTaskSource<TResult>, IValueTaskSource
{
    private ManualResetValueTaskSourceCore<TResult> _core;

    protected PooledStateMachineBox()
    {
        // The awaiting code runs on the thread that completes the call (the I/O loop), as with the runtime's builder.
        _core.RunContinuationsAsynchronously = false;
    }

    internal short Version => _core.Version;

    internal abstract Action MoveNextAction { get; }

    /// <summary>The box of a state machine's first suspension (rented, the state machine copied in), or the one it has.</summary>
    internal static PooledStateMachineBox<TResult> For<TStateMachine>(ref PooledStateMachineBox<TResult>? box, ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine
    {
        if (box is Box<TStateMachine> existing)
        {
            existing.Context = ExecutionContext.Capture();
            return existing;
        }

        Box<TStateMachine> rented = Box<TStateMachine>.Rent();
        rented.Context = ExecutionContext.Capture();

        // The builder lives inside the state machine: point it at the box before the copy, so the copy does too.
        box = rented;
        rented.StateMachine = stateMachine;
        return rented;
    }

    /// <summary>Consumes the result itself when the call completes (nobody awaits it), which returns the box.</summary>
    internal void ReturnWhenCompleted() =>
        _core.OnCompleted(s_consume, this, _core.Version, ValueTaskSourceOnCompletedFlags.None);

    private static readonly Action<object?> s_consume = static state =>
    {
        var box = (PooledStateMachineBox<TResult>)state!;
        try
        {
            box.GetResult(box.Version);
        }
        catch (Exception e)
        {
            Rethrow(e);
        }
    };

    /// <summary>A fault nobody awaits: rethrown on the thread pool (the process's unhandled-exception path).</summary>
    internal static void Rethrow(Exception exception) =>
        ThreadPool.UnsafeQueueUserWorkItem(static e => ExceptionDispatchInfo.Throw(e), exception, preferLocal: false);

    internal void SetResult(TResult result) => _core.SetResult(result);

    internal void SetException(Exception exception) => _core.SetException(exception);

    public TResult GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            Return();
        }
    }

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            Return();
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private protected void ResetCore() => _core.Reset();

    private protected abstract void Return();

    private sealed class Box<TStateMachine> : PooledStateMachineBox<TResult>
        where TStateMachine : IAsyncStateMachine
    {
        // Enough for every request a ring or a connection keeps in flight on one thread; beyond it, boxes go to the GC.
        private const int PoolLimit = 256;

        [ThreadStatic]
        private static Stack<Box<TStateMachine>>? s_pool;

        private static readonly ContextCallback s_moveNext = static state => ((Box<TStateMachine>)state!).StateMachine.MoveNext();

        private readonly Action _moveNext;

        private Box()
        {
            _moveNext = MoveNext;
        }

        public TStateMachine StateMachine = default!;

        public ExecutionContext? Context;

        internal override Action MoveNextAction => _moveNext;

        public static Box<TStateMachine> Rent() => s_pool is { Count: > 0 } pool ? pool.Pop() : new Box<TStateMachine>();

        private void MoveNext()
        {
            ExecutionContext? context = Context;
            if (context is null)
            {
                StateMachine.MoveNext();
            }
            else
            {
                ExecutionContext.Run(context, s_moveNext, this);
            }
        }

        private protected override void Return()
        {
            StateMachine = default!;
            Context = null;
            ResetCore();
            Stack<Box<TStateMachine>> pool = s_pool ??= new Stack<Box<TStateMachine>>();
            if (pool.Count < PoolLimit)
            {
                pool.Push(this);
            }
        }
    }
}
