namespace Tapdisk.Nbd.Tests;

/// <summary>
/// Holds image operations in flight for a test: use <see cref="Hold"/> as <see cref="HookedImage.BeforeOperation"/>;
/// <see cref="Entered"/> completes when the first operation reaches the image, and none finishes before <see cref="Release"/>.
/// </summary>
internal sealed class OperationGate
{
    private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Entered => _entered.Task;

    public Task Hold()
    {
        _entered.TrySetResult();
        return _release.Task;
    }

    public void Release() => _release.SetResult();

    /// <summary>An image whose operations all wait at this gate.</summary>
    public HookedImage Image(long sizeBytes) => new(sizeBytes) { BeforeOperation = (_, _) => Hold() };
}
