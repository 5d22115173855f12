namespace Tapdisk.Control;

/// <summary>VBD state bits reported by LIST (control-xen.md 3.4).</summary>
[Flags]
public enum VbdState
{
    None = 0,
    Dead = 0x1,
    Closed = 0x2,
    QuiesceRequested = 0x4,
    Quiesced = 0x8,
    PauseRequested = 0x10,
    Paused = 0x20,
    ShutdownRequested = 0x40,
    Locking = 0x80,
    LogDropped = 0x100,
    ResumeFailed = 0x200,
}
