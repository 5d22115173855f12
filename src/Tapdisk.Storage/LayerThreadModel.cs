namespace Tapdisk.Storage;

/// <summary>A layer's thread model, as nbdkit's plugins declare theirs; the backend takes the strictest in a stack.</summary>
public enum LayerThreadModel
{
    /// <summary>
    /// One request at a time on the I/O workers (the backend's per-VBD share becomes 1, and nothing runs inline); a
    /// request whose layer goes asynchronous frees its worker for the next.
    /// </summary>
    SerializeRequests,

    /// <summary>Any number of requests at once, from any thread.</summary>
    Parallel,
}
