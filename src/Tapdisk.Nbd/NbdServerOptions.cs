namespace Tapdisk.Nbd;

/// <summary>Per-server limits; the defaults suit a tapdisk VBD.</summary>
public sealed class NbdServerOptions
{
    /// <summary>Largest READ/WRITE payload served and advertised as the maximum block size.</summary>
    public int MaxRequestBytes { get; init; } = 32 * 1024 * 1024;

    /// <summary>
    /// Requests a connection may have dispatched at once; the reader stops reading at this many. Above the deepest
    /// common client (nbdcopy keeps 64 in flight per connection, Linux nbd up to 128 tags): a slot is freed only once
    /// its reply is sent, so a client sending its next request the moment it reads a reply would otherwise find none
    /// free, and each wait moved the receive loop onto the thread pool.
    /// </summary>
    public int MaxInFlightPerConnection { get; init; } = 128;

    /// <summary>
    /// READ/WRITE payload bytes a connection may hold in buffers at once; the reader stops reading past it. A request
    /// is always admitted when the connection holds nothing, so one of <see cref="MaxRequestBytes"/> still runs. Without
    /// it, 128 requests of 32 MiB (128 headers of 28 bytes) would pin 4 GiB per client. Far above what real clients keep
    /// in flight: nbdcopy 64 x 256 KiB per connection, fio 1 MiB x 8, qemu 16 requests.
    /// </summary>
    public long MaxBufferedBytesPerConnection { get; init; } = 64L * 1024 * 1024;

    /// <summary>Option payloads above this get NBD_REP_ERR_TOO_BIG (the payload is skipped, not buffered).</summary>
    public int MaxOptionBytes { get; init; } = 64 * 1024;

    /// <summary>Option payloads above this are not even skipped: the server answers TOO_BIG and drops the client.</summary>
    public long MaxSkippableOptionBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Options one handshake may send before the server gives up on the client.</summary>
    public int MaxOptions { get; init; } = 256;

    /// <summary>
    /// Time a client gets to finish negotiating before it is dropped, counted from the start of the handshake however
    /// the client behaves (silent, or sending options slowly), so a half-open connection never holds its socket and
    /// descriptor for long. An fd receiver gives the sender as long to pass its descriptor. 10 s, as qemu-nbd and the
    /// reference's negotiation steps.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Most base:allocation extents sent in one BLOCK_STATUS reply (the client asks again for the rest).</summary>
    public int MaxExtentsPerReply { get; init; } = 128 * 1024;

    /// <summary>
    /// Structured READs of at least this many bytes ask the image's allocation map first and send runs that read as
    /// zeros as OFFSET_HOLE chunks; smaller reads skip the lookup (it would cost more than it saves).
    /// </summary>
    public int SparseReadMinBytes { get; init; } = 64 * 1024;

    /// <summary>
    /// A client that takes no reply bytes for this long is dropped. Replies are sent by the I/O worker that finished
    /// the request, so a peer that stops reading would otherwise hold a shared worker for as long as it stays connected;
    /// enough such peers would stall every other client. (qemu-nbd waits forever, but in a coroutine, not a thread.)
    /// </summary>
    public TimeSpan SendStallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestBytes, 4096);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInFlightPerConnection, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBufferedBytesPerConnection, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxOptionBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSkippableOptionBytes, MaxOptionBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxOptions, 4);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxExtentsPerReply, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(SparseReadMinBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(SendStallTimeout, TimeSpan.FromMilliseconds(1));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(SendStallTimeout, TimeSpan.FromMilliseconds(int.MaxValue));
    }
}
