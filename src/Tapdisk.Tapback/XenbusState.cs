namespace Tapdisk.Tapback;

/// <summary><c>enum xenbus_state</c> (xen/io/xenbus.h); written to XenStore as decimal strings.</summary>
internal enum XenbusState
{
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}
