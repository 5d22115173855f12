using Tapdisk.Drivers.Raw;
using Tapdisk.Abi;
using Tapdisk.Drivers.VhdCrypto;
using Microsoft.Extensions.Logging;
using Tapdisk.Filters.Cache;
using Tapdisk.Filters.Cbt;
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
        new DiskType(15, "nbd", "export to a NBD server", LayerKind.Image));

    private const string LogDescription = "write logger";

    private const string LocalCacheDescription = "local parent cache";

    /// <summary>The numeric id stats print as driver.type.</summary>
    public static int Id(string driverName) => Table.Id(driverName);

    /// <summary>
    /// Opens "type:/path" with blktap's errors (no colon EINVAL, type over 31 chars ENAMETOOLONG, unknown ENOENT, not
    /// built ENOSYS), with per-open crypto settings if any (a key from OPEN's trailer, or raw ciphertext access): a
    /// one-off opener whose "vhd" carries them to every VHD layer of the chain. With <paramref name="localCache"/>, the
    /// "lc" write-back cache wraps the leaf (ADD_LCACHE, data-plane.md 7.2; only over a writable leaf with a parent,
    /// as blktap inserts it only in a chain of more than one image). With <paramref name="logPath"/>, the CBT "log"
    /// filter over that file wraps that (ADD_LOG, data-plane.md 7.1), so lc's write-backs set no CBT bits. With
    /// <paramref name="parentCache"/>, the "bc" layer of that shared cache sits between the leaf and its parent.
    /// </summary>
    public static IBlockImage Open(string parameters, ImageOpenOptions options, VhdCryptoOptions? crypto, string? logPath = null, bool localCache = false, ILogger? logger = null, ParentCache? parentCache = null)
    {
        if (parentCache is not null)
        {
            // "bc" between the leaf and its parent (blktap inserts it above the first read-only shareable image).
            options = options with { ParentFilter = parent => BlockCacheFilter.Open(parent, parentCache) };
        }

        DiskTypeTable table = Table;
        ImageOpener? opener = crypto is null ? null : Table.With(new DiskType(4, "vhd", "VHD (dynamic/differencing/fixed)", LayerKind.Image, new VhdCryptoImageDriver(crypto))).Opener;
        var filters = new List<string>(2);
        if (localCache)
        {
            table = table.With(new DiskType(11, LocalCacheFilter.Name, LocalCacheDescription, LayerKind.Filter, Filter: next => LocalCacheFilter.Wrap(next, logger, out _)));
            filters.Add(LocalCacheFilter.Name);
        }

        if (logPath is not null)
        {
            table = table.With(new DiskType(9, CbtLogFilter.Name, LogDescription, LayerKind.Filter, Filter: next => CbtLogFilter.Open(next, logPath)));
            filters.Add(CbtLogFilter.Name);
        }

        return table.OpenStack(parameters, options, filters, opener);
    }
}
