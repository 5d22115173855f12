namespace Tapdisk.Control;

/// <summary><c>params.flags</c> of OPEN and RESUME (control-xen.md 3.3).</summary>
[Flags]
public enum TapdiskOpenFlags : uint
{
    None = 0,
    Shared = 0x001,
    ReadOnly = 0x002,
    AddCache = 0x004,
    VhdIndex = 0x008,
    AddLog = 0x010,
    AddLcache = 0x020,
    ReuseParent = 0x040,
    Secondary = 0x080,
    Standby = 0x100,
    NoODirect = 0x200,
    OpenEncrypted = 0x400,
}
