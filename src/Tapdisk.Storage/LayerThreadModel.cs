namespace Tapdisk.Storage;

/// <summary>A layer's thread model, as nbdkit's plugins declare theirs; the backend takes the strictest in a stack.</summary>
public enum LayerThreadModel
{
    /// <summary>One request at a time (the backend's per-VBD share becomes 1).</summary>
    SerializeRequests,

    /// <summary>Any number of requests at once, from any thread.</summary>
    Parallel,
}
