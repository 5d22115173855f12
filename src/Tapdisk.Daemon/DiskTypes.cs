using Microsoft.Extensions.Logging;
using Tapdisk.Abi;
using Tapdisk.Drivers.Nbd;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Filters.Cache;
using Tapdisk.Filters.Cbt;
using Tapdisk.Filters.Mirror;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>The one driver table: blktap's disk types by id and name, formats and filters (control-xen.md 7.1).</summary>
internal static class DiskTypes
{
    /// <summary>
    /// Every type blktap registers, in its order. Rows without a driver are types this build does not have: opening
    /// them answers ENOSYS, as the reference does for its unbuilt ones. "vhd" is the encryption-aware VHD driver: with
    /// no key it opens clear VHDs, looks keyed ones up in the key directory (TAPDISK3_CRYPTO_KEYDIR) and refuses them
    /// otherwise (data-plane.md 4.3, 4.4).
    /// </summary>
    public static DiskTypeTable Table { get; } = new(
        new DiskType(0, RawImageDriver.DriverName, "raw image (aio)", LayerKind.Image, new RawImageDriver()),
        new DiskType(1, "sync", "raw image (sync)", LayerKind.Image),
        new DiskType(2, "vmdk", "vmware image", LayerKind.Image),
        new DiskType(3, "vhdsync", "synchronous vhd", LayerKind.Image),
        new DiskType(4, "vhd", "VHD (dynamic/differencing/fixed)", LayerKind.Image, new VhdCryptoImageDriver(VhdCryptoOptions.FromEnvironment())),
        new DiskType(5, "ram", "RAM disk", LayerKind.Image),
        new DiskType(6, "qcow", "qcow", LayerKind.Image),
        new DiskType(7, BlockCacheFilter.Name, "block cache", LayerKind.Image),
        new DiskType(8, "vhdi", "vhd index", LayerKind.Image),
        new DiskType(9, CbtLogFilter.Name, LogDescription, LayerKind.Filter, Filter: next => throw new ImageOpenException(next.Path, Errno.EINVAL, "the log filter needs a log path (tap-ctl -C)")),
        new DiskType(11, LocalCacheFilter.Name, LocalCacheDescription, LayerKind.Filter, Filter: next => LocalCacheFilter.Wrap(next, logger: null, out _)),
        new DiskType(12, "lle", "local leaf cache, ephemeral", LayerKind.Image),
        new DiskType(13, "llp", "local leaf cache, persistent", LayerKind.Image),
        new DiskType(14, "valve", "group rate limiting", LayerKind.Filter),
        NbdRow(NbdClientOptions.Default));

    private const string LogDescription = "write logger";

    private const string LocalCacheDescription = "local parent cache";

    private static DiskType NbdRow(NbdClientOptions options) => new(15, NbdImageDriver.DriverName, "export to a NBD server", LayerKind.Image, new NbdImageDriver(options));

    /// <summary>The numeric id stats print as driver.type.</summary>
    public static int Id(string driverName) => Table.Id(driverName);

    /// <summary>
    /// Opens "type:/path" with blktap's errors (no colon EINVAL, type over 31 chars ENAMETOOLONG, unknown ENOENT, not
    /// built ENOSYS), with per-open crypto settings if any (a key from OPEN's trailer, or raw ciphertext access): a
    /// one-off opener whose "vhd" carries them to every VHD layer of the chain. The layers over the format chain,
    /// innermost first: with <paramref name="localCache"/>, the "lc" write-back cache over the leaf (ADD_LCACHE,
    /// data-plane.md 7.2; only over a writable leaf with a parent, as blktap inserts it only in a chain of more than one
    /// image; its write-backs reach neither a secondary nor a CBT log, as they change no content); with
    /// <paramref name="secondary"/>, the secondary image (-2) beside that; with <paramref name="logPath"/>, the CBT
    /// "log" filter over that file above them all (ADD_LOG, data-plane.md 7.1). With <paramref name="parentCache"/>, the
    /// "bc" layer of that shared cache sits between the leaf and its parent. NBD clients (an "nbd:" image, secondary or
    /// -e parent) log to <paramref name="logger"/>. Whatever opened is closed again if a later step fails.
    /// </summary>
    public static IBlockImage Open(string parameters, ImageOpenOptions options, VhdCryptoOptions? crypto, string? logPath = null, SecondarySpec? secondary = null, bool localCache = false, ILogger? logger = null, ParentCache? parentCache = null)
    {
        if (parentCache is not null)
        {
            // "bc" between the leaf and its parent (blktap inserts it above the first read-only shareable image).
            options = options with { ParentFilter = parent => BlockCacheFilter.Open(parent, parentCache) };
        }

        DiskTypeTable table = logger is null ? Table : Table.With(NbdRow(NbdClientOptions.Default with { Logger = logger }));
        DiskTypeTable formats = table;
        ImageOpener? opener = crypto is null ? null : table.With(new DiskType(4, "vhd", "VHD (dynamic/differencing/fixed)", LayerKind.Image, new VhdCryptoImageDriver(crypto))).Opener;
        var filters = new List<string>(3);
        if (localCache)
        {
            table = table.With(new DiskType(11, LocalCacheFilter.Name, LocalCacheDescription, LayerKind.Filter, Filter: next => LocalCacheFilter.Wrap(next, logger, out _)));
            filters.Add(LocalCacheFilter.Name);
        }

        if (secondary is not null)
        {
            // Not a blktap disk type (blktap does this in the VBD), so a per-open row with no id: "mirror:" in params
            // stays unknown (ENOENT), and stats list the secondary image instead of this layer.
            ImageOpenOptions secondaryOptions = options with { ParentFilter = null, ParentOverride = null };
            table = table.With(new DiskType(-1, MirrorFilter.Name, "secondary image", LayerKind.Filter, Filter: next => OpenSecondary(formats, next, secondary, secondaryOptions)));
            filters.Add(MirrorFilter.Name);
        }

        if (logPath is not null)
        {
            table = table.With(new DiskType(9, CbtLogFilter.Name, LogDescription, LayerKind.Filter, Filter: next => CbtLogFilter.Open(next, logPath)));
            filters.Add(CbtLogFilter.Name);
        }

        return table.OpenStack(parameters, options, filters, opener);
    }

    /// <summary>
    /// Opens the secondary through the same table as any image (so an "nbd:" secondary needs nothing of its own), with
    /// the leaf's flags, and puts it beside <paramref name="primary"/>. As blktap (control-xen.md 3.3), an nbd
    /// secondary that cannot be reached leaves the VBD serving without it and stats say nbd_mirror_failed 1; any other
    /// secondary that cannot be opened, or one of another size (EINVAL), fails the open.
    /// </summary>
    private static IBlockImage OpenSecondary(DiskTypeTable formats, IBlockImage primary, SecondarySpec spec, ImageOpenOptions options)
    {
        IBlockImage image;
        try
        {
            image = formats.OpenStack(spec.Parameters, options);
        }
        catch (Exception e) when (spec.Parameters.StartsWith("nbd:", StringComparison.Ordinal)
            && e is IOException or ImageOpenException or ImageFormatException && StorageErrors.ToErrno(e) != Errno.ENOSYS)
        {
            spec.State.MarkMirrorFailed();
            spec.OnUnreachable(e);
            return primary;
        }

        try
        {
            return MirrorFilter.Open(primary, image, spec.Mode, spec.State, spec.Logger, spec.VbdName);
        }
        catch
        {
            image.Dispose();
            throw;
        }
    }
}
