using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Nbd;

/// <summary>Per-request state, pooled per connection and queued to the thread pool without allocating.</summary>
internal sealed class NbdRequest : IThreadPoolWorkItem
{
    private readonly NbdConnection _connection;

    public NbdRequest(NbdConnection connection)
    {
        _connection = connection;
    }

    public ushort Flags { get; set; }

    public ushort Command { get; set; }

    public ulong Handle { get; set; }

    public ulong OffsetBytes { get; set; }

    /// <summary>The request's length: 32 bits on the wire, 64 with extended headers (READ/WRITE are capped far below).</summary>
    public ulong LengthBytes { get; set; }

    /// <summary>READ result or WRITE payload, exactly <see cref="LengthBytes"/> long at index 0.</summary>
    public AlignedMemory? Buffer { get; set; }

    /// <summary>Payload bytes counted against the connection's buffer budget (released with the request).</summary>
    public long ReservedBytes { get; set; }

    /// <summary>NBD error value to reply with (0 = success).</summary>
    public uint Error { get; set; }

    /// <summary>Raw extents from the image for BLOCK_STATUS (may extend outside the request; clipped when sent).</summary>
    public ExtentList Extents { get; } = new();

    /// <summary>Dirty-bitmap extents for BLOCK_STATUS (flags: 1 = dirty, qemu's meaning); clipped when sent.</summary>
    public ExtentList DirtyExtents { get; } = new();

    /// <summary>qemu:allocation-depth extents for BLOCK_STATUS (flags: the depth); clipped when sent.</summary>
    public ExtentList DepthExtents { get; } = new();

    /// <summary>Per-layer scratch maps for the depth walk, kept with the pooled request.</summary>
    public List<ExtentList> LayerExtents { get; } = [];

    /// <summary>A structured READ whose <see cref="Extents"/> mark runs that read as zeros (sent as OFFSET_HOLE).</summary>
    public bool Sparse { get; set; }

    public Memory<byte> Data => Buffer is null ? Memory<byte>.Empty : Buffer.Memory[..(int)LengthBytes];

    public void Reset()
    {
        Flags = 0;
        Command = 0;
        Handle = 0;
        OffsetBytes = 0;
        LengthBytes = 0;
        Buffer = null;
        ReservedBytes = 0;
        Error = 0;
        Sparse = false;
        Extents.Clear();
        DirtyExtents.Clear();
        DepthExtents.Clear();
    }

    void IThreadPoolWorkItem.Execute() => _connection.Execute(this);
}
