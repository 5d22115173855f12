namespace Tapdisk.XenStore;

/// <summary>A transaction id as xenstored handed it out; <see cref="None"/> (0) means outside any transaction.</summary>
public readonly record struct XenStoreTransaction(uint Id)
{
    public static XenStoreTransaction None => default;
}
