namespace Tapdisk.Blkif;

// Not an unsafe part: async methods cannot live in an unsafe context.
public sealed partial class BlkifRing
{
    /// <summary>
    /// Stops intake, waits (bounded) for requests still at the image, then unbinds and unmaps. No response is written after
    /// this starts: the frontend is gone or going (tapdisk's dead-ring rule, control-xen.md 4.2).
    /// </summary>
    public async Task DisconnectAsync()
    {
        _stopRequested = true;
        Wake();
        Task done = await Task.WhenAny(_stopped.Task, Task.Delay(_options.DrainTimeout)).ConfigureAwait(false);
        if (done != _stopped.Task)
        {
            Log.DrainTimedOut(_logger, Domid, Devid, _slots.Length - Volatile.Read(ref _freeCount), _options.DrainTimeout.TotalSeconds);
        }
    }
}
