namespace Tapdisk.Abi;

/// <summary>open(2) flags (x86-64 values, checked by the ABI probe).</summary>
[Flags]
public enum OpenFlags
{
    ReadOnly = 0x0,
    ReadWrite = 0x2,
    Create = 0x40,
    Exclusive = 0x80,
    Truncate = 0x200,
    NonBlocking = 0x800,
    Dsync = 0x1000,
    Direct = 0x4000,
    LargeFile = 0x8000,
    NoFollow = 0x20000,
    CloseOnExec = 0x80000,
}
