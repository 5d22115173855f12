namespace Tapdisk.Daemon;

internal sealed partial class TapdiskHost
{
    /// <summary>SIGUSR1: one line per VBD into the log (blktap's debug dump), whatever the verbosity.</summary>
    public void LogDebugState()
    {
        Vbd[] vbds;
        lock (_lock)
        {
            vbds = [.. _vbds];
        }

        _log.Info($"debug: {vbds.Length} VBDs");
        foreach (Vbd vbd in vbds)
        {
            var backend = vbd.Backend;
            _log.Info($"debug: minor {vbd.Minor}: {vbd.Params ?? "(not open)"}, state {(int)vbd.State:x}, rings {vbd.Rings.Count}"
                + (backend is null ? string.Empty : $", in flight {backend.InFlight}, secs read {backend.ReadSectors} written {backend.WriteSectors}"));
        }
    }
}
