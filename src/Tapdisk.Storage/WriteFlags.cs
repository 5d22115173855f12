namespace Tapdisk.Storage;

[Flags]
public enum WriteFlags
{
    None = 0,

    /// <summary>Force unit access: durable before the write completes.</summary>
    Fua = 1,
}
