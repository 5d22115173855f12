using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Filters.Mirror;

/// <summary>
/// A VBD's secondary image (tap-ctl -2, data-plane.md 2.7). blktap does this in the VBD itself, not as a disk type, so
/// stats list the secondary image after the leaf and never this layer.
/// Mirror mode: every write, trim and zero goes to the primary and the secondary at once and is answered when both
/// are done; reads come from the primary; flush reaches both. Any error from the secondary drops it (closed once no
/// request uses it) and the request succeeds on the primary alone: the guest never sees it; stats nbd_mirror_failed
/// says the mirror is incomplete. Standby mode: changes go to the primary alone.
/// In both modes, a change the primary refuses with ENOSPC is made on the secondary instead and answered as a success
/// (blktap's ENOSPC masking, which the toolstack relies on), blktap's signal file is created, and from then on every
/// change goes to the secondary only (counted in FIXME_enospc_redirect_count).
/// Deliberate difference from blktap (a data-loss defect, not copied): after that switch blktap's chain fails over to
/// the secondary (standby), which lacks everything written before, or disables mirroring and keeps reading the primary
/// that lacks the masked write (mirror); both return stale data (data-plane.md 2.7). Here reads take each sector
/// from the image that holds its newest data (a per-sector map of what went to the secondary), and a secondary holding
/// such data is never dropped: its errors reach the guest instead.
/// </summary>
public sealed class MirrorFilter : BlockFilter
{
    /// <summary>This layer's name in the per-open driver table row (not a blktap disk type; stats skip it).</summary>
    public const string Name = "mirror";

    private const int SectorSize = 512;

    private readonly SecondaryMode _mode;
    private readonly SecondaryState _state;
    private readonly ILogger _logger;
    private readonly string _vbdName;
    private readonly string _secondaryPath;
    private readonly ImageCapabilities _capabilities;
    private readonly IoLimits _limits;
    private readonly LayerThreadModel _threadModel;

    // The secondary in use (null once dropped or closed), one dropped and waiting for its last request, and how many
    // requests hold it: it is closed when the last holder lets go.
    private IBlockImage? _secondary;
    private IBlockImage? _retired;
    private int _holders;
    private long _secondaryWriteSectors;
    private long _secondaryFailedSectors;

    private MirrorFilter(IBlockImage primary, IBlockImage secondary, SecondaryMode mode, SecondaryState state, ILogger logger, string vbdName)
        : base(primary)
    {
        _secondary = secondary;
        _secondaryPath = secondary.Path;
        _mode = mode;
        _state = state;
        _logger = logger;
        _vbdName = vbdName;

        // Advertise what both can do, so a change is never made on one and refused by the other; FUA is emulated above
        // (BlockSizeFilter) with a flush, which reaches both. Extents come from the primary alone, so none once redirected.
        const ImageCapabilities Both = ImageCapabilities.Trim | ImageCapabilities.Zero | ImageCapabilities.FastZero | ImageCapabilities.Fua;
        _capabilities = primary.Capabilities & (secondary.Capabilities | ~Both);

        // Whole sectors at least: the redirect map counts sectors.
        _limits = new IoLimits(
            Math.Max(SectorSize, Math.Max(primary.Limits.MinimumBlockBytes, secondary.Limits.MinimumBlockBytes)),
            Math.Max(primary.Limits.PreferredBlockBytes, secondary.Limits.PreferredBlockBytes),
            Math.Min(primary.Limits.MaximumTransferBytes, secondary.Limits.MaximumTransferBytes));
        _threadModel = primary.ThreadModel == LayerThreadModel.SerializeRequests || secondary.ThreadModel == LayerThreadModel.SerializeRequests
            ? LayerThreadModel.SerializeRequests
            : LayerThreadModel.Parallel;
    }

    public override string DriverName => Name;

    public override ImageCapabilities Capabilities =>
        _state.HoldsRedirectedData ? _capabilities & ~ImageCapabilities.Extents : _capabilities;

    public override IoLimits Limits => _limits;

    public override LayerThreadModel ThreadModel => _threadModel;

    public SecondaryMode Mode => _mode;

    /// <summary>The secondary as stats list it: in mirror mode until dropped; in standby mode once it took changes.</summary>
    public IBlockImage? ListedSecondary =>
        _mode == SecondaryMode.Mirror || _state.HoldsRedirectedData ? Volatile.Read(ref _secondary) : null;

    /// <summary>Sectors written to the secondary, and sectors of changes it failed (its stats hits and fail).</summary>
    public long SecondaryWriteSectors => Volatile.Read(ref _secondaryWriteSectors);

    public long SecondaryFailedSectors => Volatile.Read(ref _secondaryFailedSectors);

    /// <summary>
    /// Puts <paramref name="secondary"/> beside <paramref name="primary"/>. A secondary of another size, or a read-only
    /// one under a writable primary, is refused with EINVAL; the caller then closes both.
    /// </summary>
    public static MirrorFilter Open(IBlockImage primary, IBlockImage secondary, SecondaryMode mode, SecondaryState state, ILogger? logger = null, string vbdName = "vbd")
    {
        ArgumentNullException.ThrowIfNull(primary);
        ArgumentNullException.ThrowIfNull(secondary);
        ArgumentNullException.ThrowIfNull(state);
        if (secondary.SizeBytes != primary.SizeBytes)
        {
            throw new ImageOpenException(secondary.Path, Errno.EINVAL,
                $"secondary is {secondary.SizeBytes} bytes but the disk is {primary.SizeBytes} bytes; they must be the same size");
        }

        if (secondary.IsReadOnly && !primary.IsReadOnly)
        {
            throw new ImageOpenException(secondary.Path, Errno.EINVAL, "secondary is read-only but the disk is writable");
        }

        return new MirrorFilter(primary, secondary, mode, state, logger ?? NullLogger.Instance, vbdName);
    }

    public override bool MayBlock(BlockOperation operation, long offsetBytes, long lengthBytes) =>
        Next.MayBlock(operation, offsetBytes, lengthBytes)
        || (operation != BlockOperation.Read && Volatile.Read(ref _secondary) is { } secondary && secondary.MayBlock(operation, offsetBytes, lengthBytes));

    public override ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        RedirectMap? map = _state.Redirect;
        return map is null ? Next.ReadAsync(offsetBytes, destination, cancellationToken) : ReadRedirectedAsync(map, offsetBytes, destination, cancellationToken);
    }

    public override ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default) =>
        Change(new Change(BlockOperation.Write, offsetBytes, source.Length, source, flags, ZeroFlags.None), cancellationToken);

    public override ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        Change(new Change(BlockOperation.Trim, offsetBytes, lengthBytes, default, WriteFlags.None, ZeroFlags.None), cancellationToken);

    public override ValueTask ZeroAsync(long offsetBytes, long lengthBytes, ZeroFlags flags = ZeroFlags.None, CancellationToken cancellationToken = default) =>
        Change(new Change(BlockOperation.Zero, offsetBytes, lengthBytes, default, WriteFlags.None, flags), cancellationToken);

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        // A standby secondary holds nothing until the switch.
        if (_mode == SecondaryMode.Standby && !_state.HoldsRedirectedData)
        {
            return Next.FlushAsync(cancellationToken);
        }

        IBlockImage? secondary = Hold();
        if (secondary is null)
        {
            return Next.FlushAsync(cancellationToken);
        }

        if ((secondary.Capabilities & ImageCapabilities.Flush) == 0)
        {
            Release();
            return Next.FlushAsync(cancellationToken);
        }

        return BothAsync(secondary, new Change(BlockOperation.Flush, 0, 0, default, WriteFlags.None, ZeroFlags.None), cancellationToken);
    }

    public override ValueTask GetExtentsAsync(long offsetBytes, long lengthBytes, ExtentList extents, CancellationToken cancellationToken = default)
    {
        if (_state.HoldsRedirectedData)
        {
            // Part of the data is on the secondary: claim data everywhere (always correct) rather than the primary's holes.
            extents.Add(offsetBytes, lengthBytes, ExtentFlags.Data);
            return ValueTask.CompletedTask;
        }

        return Next.GetExtentsAsync(offsetBytes, lengthBytes, extents, cancellationToken);
    }

    private ValueTask Change(Change change, CancellationToken cancellationToken)
    {
        if (_state.Redirect is { } map)
        {
            return RedirectedAsync(map, change, cancellationToken);
        }

        if (_mode == SecondaryMode.Standby)
        {
            return StandbyAsync(change, cancellationToken);
        }

        IBlockImage? secondary = Hold();
        return secondary is null ? change.ApplyTo(Next, cancellationToken) : BothAsync(secondary, change, cancellationToken);
    }

    /// <summary>Mirror mode (and flush): the change on both at once, answered when both are done.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask BothAsync(IBlockImage secondary, Change change, CancellationToken cancellationToken)
    {
        // Started together (blktap queues the secondary first); neither waits for the other.
        ValueTask toSecondary = Start(secondary, change, cancellationToken);
        ValueTask toPrimary = Start(Next, change, cancellationToken);
        Exception? secondaryError = null;
        Exception? primaryError = null;
        try
        {
            await toSecondary.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            secondaryError = e;
        }

        try
        {
            await toPrimary.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            primaryError = e;
        }

        try
        {
            if (secondaryError is not null)
            {
                Interlocked.Add(ref _secondaryFailedSectors, change.LengthBytes / SectorSize);
                // A secondary holding redirected data is kept. The guest must then hear of its failure when the
                // secondary's copy matters: a flush, or a change to sectors that read from there (a change started
                // before the switch that touches none of them is complete on the primary).
                if (!Drop(secondary, secondaryError)
                    && (change.Operation == BlockOperation.Flush || primaryError is not null || (_state.Redirect is { } map && AnyMarked(map, change))))
                {
                    ExceptionDispatchInfo.Throw(secondaryError);
                }
            }
            else if (change.Operation == BlockOperation.Write)
            {
                Interlocked.Add(ref _secondaryWriteSectors, change.LengthBytes / SectorSize);
            }

            if (primaryError is null)
            {
                return;
            }

            if (secondaryError is null && change.Operation != BlockOperation.Flush && IsOutOfSpace(primaryError))
            {
                // The secondary has the change the primary could not take: it becomes where changes go.
                RedirectMap map = SwitchToSecondary(primaryError);
                map.Mark(change.OffsetBytes, change.LengthBytes);
                _state.AddRedirected(change.LengthBytes / SectorSize);
                return;
            }

            ExceptionDispatchInfo.Throw(primaryError);
        }
        finally
        {
            Release();
        }
    }

    /// <summary>Standby mode before the switch: the primary alone; on ENOSPC the change is made on the secondary.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask StandbyAsync(Change change, CancellationToken cancellationToken)
    {
        try
        {
            await change.ApplyTo(Next, cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (IsOutOfSpace(e))
        {
            RedirectMap map = SwitchToSecondary(e);
            await RedirectedAsync(map, change, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>After the switch: the change on the secondary alone; its sectors then read from there.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask RedirectedAsync(RedirectMap map, Change change, CancellationToken cancellationToken)
    {
        IBlockImage secondary = Hold() ?? throw Gone();
        try
        {
            await change.ApplyTo(secondary, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Interlocked.Add(ref _secondaryFailedSectors, change.LengthBytes / SectorSize);
            throw;
        }
        finally
        {
            Release();
        }

        // Published only now: until the secondary has the change, its sectors still read from the primary.
        map.Mark(change.OffsetBytes, change.LengthBytes);
        _state.AddRedirected(change.LengthBytes / SectorSize);
        if (change.Operation == BlockOperation.Write)
        {
            Interlocked.Add(ref _secondaryWriteSectors, change.LengthBytes / SectorSize);
        }
    }

    /// <summary>Each run of sectors from the image that holds its newest data.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskBuilder))]
    private async ValueTask ReadRedirectedAsync(RedirectMap map, long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        IBlockImage secondary = Hold() ?? throw Gone();
        try
        {
            int done = 0;
            while (done < destination.Length)
            {
                long sector = (offsetBytes + done) / SectorSize;
                long run = map.Run(sector, (destination.Length - done) / SectorSize, out bool redirected);
                int length = (int)(run * SectorSize);
                IBlockImage source = redirected ? secondary : Next;
                await source.ReadAsync(offsetBytes + done, destination.Slice(done, length), cancellationToken).ConfigureAwait(false);
                done += length;
            }
        }
        finally
        {
            Release();
        }
    }

    private static ValueTask Start(IBlockImage image, Change change, CancellationToken cancellationToken)
    {
        try
        {
            return change.ApplyTo(image, cancellationToken);
        }
        catch (Exception e)
        {
            // A layer that throws instead of faulting its ValueTask: the other side still runs and is awaited.
            return ValueTask.FromException(e);
        }
    }

    private static bool AnyMarked(RedirectMap map, Change change)
    {
        long first = change.OffsetBytes / SectorSize;
        long run = map.Run(first, Math.Max(1, change.LengthBytes / SectorSize), out bool redirected);
        return redirected || run < change.LengthBytes / SectorSize;
    }

    private static bool IsOutOfSpace(Exception e) => StorageErrors.ToErrno(e) == Errno.ENOSPC;

    private ErrnoIOException Gone() => new(Errno.EIO, _secondaryPath, "secondary image already closed");

    private RedirectMap SwitchToSecondary(Exception reason)
    {
        if (_state.StartRedirect(Next.SizeBytes, out RedirectMap map))
        {
            Log.Redirected(_logger, _vbdName, Next.Path, reason.Message, _secondaryPath, _mode);
            Signal();
        }

        return map;
    }

    /// <summary>blktap's signal to the toolstack: an empty file, mode 0666, that tapdisk never removes.</summary>
    private void Signal()
    {
        if (_state.EnospcSignalPath is not { } path)
        {
            return;
        }

        try
        {
            using (File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write))
            {
            }

            if (!OperatingSystem.IsWindows())
            {
                // 0666 whatever the umask, as blktap's file: the toolstack (not root in every setup) removes it.
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.SignalFailed(_logger, _vbdName, path, e);
        }
    }

    /// <summary>The secondary, held until <see cref="Release"/>; null once dropped.</summary>
    private IBlockImage? Hold()
    {
        // Counted before reading, so a drop that sees no holders can close what it took away.
        Interlocked.Increment(ref _holders);
        IBlockImage? secondary = Volatile.Read(ref _secondary);
        if (secondary is null)
        {
            Release();
        }

        return secondary;
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _holders) == 0 && Volatile.Read(ref _retired) is not null)
        {
            CloseRetired();
        }
    }

    /// <summary>Drops a failed secondary; false when it holds redirected data and must stay.</summary>
    private bool Drop(IBlockImage secondary, Exception reason)
    {
        if (_state.HoldsRedirectedData)
        {
            return false;
        }

        if (Interlocked.CompareExchange(ref _secondary, null, secondary) == secondary)
        {
            _state.MarkMirrorFailed();
            Log.SecondaryDropped(_logger, _vbdName, _secondaryPath, reason.Message, reason);

            // Closed by the last holder (this request is one, so it happens at the latest in its Release).
            Volatile.Write(ref _retired, secondary);
        }

        return true;
    }

    private void CloseRetired()
    {
        if (Interlocked.Exchange(ref _retired, null) is not { } retired)
        {
            return;
        }

        // Off the I/O thread: closing a remote secondary may wait on its peer.
        ThreadPool.UnsafeQueueUserWorkItem(static s =>
        {
            (MirrorFilter filter, IBlockImage image) = s;
            try
            {
                image.Dispose();
            }
            catch (Exception e)
            {
                Log.DisposeFailed(filter._logger, filter._vbdName, filter._secondaryPath, e);
            }
        }, (this, retired), preferLocal: false);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                Interlocked.Exchange(ref _secondary, null)?.Dispose();
                Interlocked.Exchange(ref _retired, null)?.Dispose();
            }
            finally
            {
                base.Dispose(disposing);
            }
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            if (Interlocked.Exchange(ref _secondary, null) is { } secondary)
            {
                await secondary.DisposeAsync().ConfigureAwait(false);
            }

            if (Interlocked.Exchange(ref _retired, null) is { } retired)
            {
                await retired.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            await base.DisposeCoreAsync().ConfigureAwait(false);
        }
    }
}
