using System.Runtime.CompilerServices;
using Tapdisk.Abi;
using Tapdisk.Storage;
using static Tapdisk.NbdProtocol;

namespace Tapdisk.Drivers.Nbd;

/// <summary>
/// An image read and written through an NBD server. Optional commands are used only when the server offers them:
/// FUA without SEND_FUA becomes write then flush; WRITE_ZEROES without SEND_WRITE_ZEROES becomes writes of zeros;
/// flush and trim the server does not offer are not advertised and are refused (EOPNOTSUPP) if asked anyway.
/// Requests larger than the server's maximum block size are split.
/// </summary>
public sealed class NbdImage : IBlockImage
{
    private const int ZeroChunkBytes = 1024 * 1024;
    private static readonly byte[] s_zeros = new byte[ZeroChunkBytes];

    private readonly NbdClientConnection _connection;
    private readonly int _maxRequestBytes;

    private NbdImage(NbdClientConnection connection, bool readOnly)
    {
        _connection = connection;
        IsReadOnly = readOnly;
        _maxRequestBytes = connection.MaximumBlockBytes;
        var caps = ImageCapabilities.None;
        bool flush = connection.Has(NBD_FLAG_SEND_FLUSH);
        if (flush)
        {
            caps |= ImageCapabilities.Flush;
        }

        if (!readOnly)
        {
            caps |= ImageCapabilities.Write | ImageCapabilities.Zero;
            if (connection.Has(NBD_FLAG_SEND_FUA) || flush)
            {
                caps |= ImageCapabilities.Fua;
            }

            if (connection.Has(NBD_FLAG_SEND_TRIM))
            {
                caps |= ImageCapabilities.Trim;
            }

            if (connection.Has(NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO))
            {
                caps |= ImageCapabilities.FastZero;
            }
        }

        if (connection.Has(NBD_FLAG_CAN_MULTI_CONN))
        {
            caps |= ImageCapabilities.MultiConnSafe;
        }

        Capabilities = caps;
        Limits = new IoLimits(connection.MinimumBlockBytes, connection.PreferredBlockBytes, connection.MaximumBlockBytes);
    }

    public string DriverName => NbdImageDriver.DriverName;

    /// <summary>The address as given after "nbd:".</summary>
    public string Path => _connection.Address.Text;

    public long SizeBytes => _connection.SizeBytes;

    public bool IsReadOnly { get; }

    public ImageCapabilities Capabilities { get; }

    public IoLimits Limits { get; }

    public IBlockImage? Parent => null;

    public LayerCounters Counters { get; } = new();

    /// <summary>Why the connection died, or null while it serves.</summary>
    public string? Failure => _connection.Failure;

    /// <summary>How the connection was negotiated (for logs and tests).</summary>
    public string Handshake => _connection.Style;

    /// <summary>
    /// Nothing waits for the server: a send takes what the socket has room for and leaves the rest to the connection's
    /// writer, a request with every slot taken waits for one asynchronously, and the reply completes on the sender's
    /// I/O loop (or the thread pool). So frontends run these requests on their own thread, no I/O worker between.
    /// </summary>
    public bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) => false;

    /// <summary>Connects to <paramref name="address"/> and negotiates; a read-only export is refused for a writable open.</summary>
    public static NbdImage Open(string address, ImageOpenOptions options, NbdClientOptions clientOptions)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clientOptions);
        NbdClientConnection connection = NbdClientConnection.Connect(NbdAddress.Parse(address), clientOptions);
        if (!options.ReadOnly && connection.Has(NBD_FLAG_READ_ONLY))
        {
            connection.Dispose();
            throw new ImageOpenException(address, Errno.EROFS, "the NBD server exports this disk read-only, but it was opened for writing");
        }

        return new NbdImage(connection, options.ReadOnly || connection.Has(NBD_FLAG_READ_ONLY));
    }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (destination.Length == 0)
        {
            return ValueTask.CompletedTask;
        }

        Counters.CountRead(destination.Length);
        return destination.Length <= _maxRequestBytes
            ? _connection.Submit(NBD_CMD_READ, 0, offsetBytes, destination.Length, default, destination)
            : ReadSplitAsync(offsetBytes, destination);
    }

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            return ValueTask.FromException(StorageErrors.ReadOnly(Path));
        }

        bool fua = (flags & WriteFlags.Fua) != 0;
        if (source.Length <= _maxRequestBytes && (!fua || _connection.Has(NBD_FLAG_SEND_FUA)))
        {
            return source.Length == 0 && !fua
                ? ValueTask.CompletedTask
                : _connection.Submit(NBD_CMD_WRITE, fua ? NBD_CMD_FLAG_FUA : (ushort)0, offsetBytes, source.Length, source, default);
        }

        return WriteSplitAsync(offsetBytes, source, fua);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        _connection.Has(NBD_FLAG_SEND_FLUSH)
            ? _connection.Submit(NBD_CMD_FLUSH, 0, 0, 0, default, default)
            : ValueTask.FromException(Unsupported("FLUSH", "SEND_FLUSH"));

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            return ValueTask.FromException(StorageErrors.ReadOnly(Path));
        }

        return _connection.Has(NBD_FLAG_SEND_TRIM)
            ? CommandSplitAsync(NBD_CMD_TRIM, 0, offsetBytes, lengthBytes)
            : ValueTask.FromException(Unsupported("TRIM", "SEND_TRIM"));
    }

    public ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default)
    {
        if (IsReadOnly)
        {
            return ValueTask.FromException(StorageErrors.ReadOnly(Path));
        }

        bool fast = (flags & ZeroFlags.FastOnly) != 0;
        if (!_connection.Has(NBD_FLAG_SEND_WRITE_ZEROES))
        {
            // Writing zeros is the correct emulation, but never "fast".
            return fast ? ValueTask.FromException(Unsupported("fast WRITE_ZEROES", "SEND_WRITE_ZEROES")) : WriteZerosAsync(offsetBytes, lengthBytes, (flags & ZeroFlags.Fua) != 0);
        }

        if (fast && !_connection.Has(NBD_FLAG_SEND_FAST_ZERO))
        {
            return ValueTask.FromException(Unsupported("fast WRITE_ZEROES", "SEND_FAST_ZERO"));
        }

        ushort commandFlags = (ushort)(((flags & ZeroFlags.NoHole) != 0 ? NBD_CMD_FLAG_NO_HOLE : 0) | (fast ? NBD_CMD_FLAG_FAST_ZERO : 0));
        return ZeroCommandAsync(offsetBytes, lengthBytes, commandFlags, (flags & ZeroFlags.Fua) != 0);
    }

    /// <summary>No block status is negotiated: everything is data, which is always a correct answer.</summary>
    public ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(extents);
        extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadSplitAsync(long offsetBytes, Memory<byte> destination)
    {
        for (int done = 0; done < destination.Length; done += _maxRequestBytes)
        {
            int n = Math.Min(_maxRequestBytes, destination.Length - done);
            await _connection.Submit(NBD_CMD_READ, 0, offsetBytes + done, n, default, destination.Slice(done, n)).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask WriteSplitAsync(long offsetBytes, ReadOnlyMemory<byte> source, bool fua)
    {
        bool nativeFua = fua && _connection.Has(NBD_FLAG_SEND_FUA);
        for (int done = 0; done < source.Length; done += _maxRequestBytes)
        {
            int n = Math.Min(_maxRequestBytes, source.Length - done);
            await _connection.Submit(NBD_CMD_WRITE, nativeFua ? NBD_CMD_FLAG_FUA : (ushort)0, offsetBytes + done, n, source.Slice(done, n), default).ConfigureAwait(false);
        }

        if (fua && !nativeFua)
        {
            await FlushAsync().ConfigureAwait(false);
        }
    }

    private async ValueTask ZeroCommandAsync(long offsetBytes, long lengthBytes, ushort flags, bool fua)
    {
        bool nativeFua = fua && _connection.Has(NBD_FLAG_SEND_FUA);
        await CommandSplitAsync(NBD_CMD_WRITE_ZEROES, (ushort)(flags | (nativeFua ? NBD_CMD_FLAG_FUA : 0)), offsetBytes, lengthBytes).ConfigureAwait(false);
        if (fua && !nativeFua)
        {
            await FlushAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A payload-less command over a range, in pieces the 32-bit length field and the server's maximum allow.</summary>
    private async ValueTask CommandSplitAsync(ushort command, ushort flags, long offsetBytes, long lengthBytes)
    {
        for (long done = 0; done < lengthBytes; done += _maxRequestBytes)
        {
            int n = (int)Math.Min(_maxRequestBytes, lengthBytes - done);
            await _connection.Submit(command, flags, offsetBytes + done, n, default, default).ConfigureAwait(false);
        }
    }

    private async ValueTask WriteZerosAsync(long offsetBytes, long lengthBytes, bool fua)
    {
        int chunk = Math.Min(ZeroChunkBytes, _maxRequestBytes);
        for (long done = 0; done < lengthBytes; done += chunk)
        {
            int n = (int)Math.Min(chunk, lengthBytes - done);
            await _connection.Submit(NBD_CMD_WRITE, 0, offsetBytes + done, n, s_zeros.AsMemory(0, n), default).ConfigureAwait(false);
        }

        if (fua)
        {
            await FlushAsync().ConfigureAwait(false);
        }
    }

    private ErrnoIOException Unsupported(string what, string flag) =>
        new(Errno.EOPNOTSUPP, $"nbd:{Path}", $"{what}: the NBD server does not offer {flag}");

    public void Dispose() => _connection.Dispose();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
