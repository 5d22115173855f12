namespace Tapdisk.XenStore;

/// <summary>The <c>xsd_sockmsg_type</c> values (control-xen.md Part II 5.2); 20 (XS_RESTRICT) is retired.</summary>
public enum XenStoreMessageType : uint
{
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPermissions = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Remove = 13,
    SetPermissions = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}
