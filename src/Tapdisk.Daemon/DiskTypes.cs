using Microsoft.Extensions.Logging;
using Tapdisk.Drivers.Nbd;
using Tapdisk.Drivers.Raw;
using Tapdisk.Abi;
using Tapdisk.Drivers.VhdCrypto;
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
        new DiskType(7, "bc", "block cache", LayerKind.Image),
        new DiskType(8, "vhdi", "vhd index", LayerKind.Image),
        new DiskType(9, CbtLogFilter.Name, LogDescription, LayerKind.Filter, Filter: next => throw new ImageOpenException(next.Path, Errno.EINVAL, "the log filter needs a log path (tap-ctl -C)")),
        new DiskType(11, "lc", "local parent cache", LayerKind.Filter),
        new DiskType(12, "lle", "local leaf cache, ephemeral", LayerKind.Image),
        new DiskType(13, "llp", "local leaf cache, persistent", LayerKind.Image),
        new DiskType(14, "valve", "group rate limiting", LayerKind.Filter),
        NbdRow(NbdClientOptions.Default));

    private const string LogDescription = "write logger";

    private static DiskType NbdRow(NbdClientOptions options) => new(15, NbdImageDriver.DriverName, "export to a NBD server", LayerKind.Image, new NbdImageDriver(options));

    /// <summary>The numeric id stats print as driver.type.</summary>
    public static int Id(string driverName) => Table.Id(driverName);

    /// <summary>
    /// Opens "type:/path" with blktap's errors (no colon EINVAL, type over 31 chars ENAMETOOLONG, unknown ENOENT, not
    /// built ENOSYS), with per-open crypto settings if any (a key from OPEN's trailer, or raw ciphertext access): a
    /// one-off opener whose "vhd" carries them to every VHD layer of the chain. With <paramref name="logPath"/>, the
    /// CBT "log" filter over that file wraps the leaf (ADD_LOG, data-plane.md 7.1). NBD clients log to <paramref name="logger"/>.
    /// </summary>
    public static IBlockImage Open(string parameters, ImageOpenOptions options, VhdCryptoOptions? crypto, string? logPath = null, ILogger? logger = null)
    {
        DiskTypeTable table = logger is null ? Table : Table.With(NbdRow(NbdClientOptions.Default with { Logger = logger }));
        ImageOpener? opener = crypto is null ? null : table.With(new DiskType(4, "vhd", "VHD (dynamic/differencing/fixed)", LayerKind.Image, new VhdCryptoImageDriver(crypto))).Opener;
        if (logPath is null)
        {
            return table.OpenStack(parameters, options, filters: null, opener);
        }

        DiskTypeTable withLog = table.With(new DiskType(9, CbtLogFilter.Name, LogDescription, LayerKind.Filter, Filter: next => CbtLogFilter.Open(next, logPath)));
        return withLog.OpenStack(parameters, options, [CbtLogFilter.Name], opener);
    }
}
