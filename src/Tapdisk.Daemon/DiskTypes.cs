using Tapdisk.Abi;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

/// <summary>The one driver table, named and numbered as blktap's disk types (control-xen.md 7.1).</summary>
internal static class DiskTypes
{
    // "vhd" is the encryption-aware VHD driver: with no key it opens clear VHDs, looks keyed ones up in the key
    // directory (TAPDISK3_CRYPTO_KEYDIR) and refuses them otherwise (data-plane.md 4.3, 4.4).
    private static readonly IImageDriver[] s_drivers = [new RawImageDriver() /* "aio" */, new VhdCryptoImageDriver(VhdCryptoOptions.FromEnvironment()) /* "vhd" */];

    /// <summary>blktap types we do not build: opening them answers ENOSYS, as the reference does for its unbuilt ones.</summary>
    private static readonly string[] s_notBuilt = ["sync", "vmdk", "vhdsync", "qcow", "ram", "bc", "vhdi", "log", "lc", "lle", "llp", "valve", "nbd"];

    public static ImageOpener Opener { get; } = new(s_drivers);

    /// <summary>The numeric id stats print as driver.type.</summary>
    public static int Id(string driverName) => driverName switch
    {
        RawImageDriver.DriverName => 0,
        VhdImageDriver.DriverName => 4,
        _ => -1,
    };

    /// <summary>Opens "type:/path" with blktap's errors: no colon EINVAL, type over 31 chars ENAMETOOLONG, unknown ENOENT.</summary>
    public static IBlockImage Open(string parameters, ImageOpenOptions options) => Open(parameters, options, crypto: null);

    /// <summary>
    /// As <see cref="Open(string, ImageOpenOptions)"/>, with per-open crypto settings (a key from OPEN's trailer, or raw
    /// ciphertext access): a one-off table whose "vhd" carries them to every VHD layer of the chain.
    /// </summary>
    public static IBlockImage Open(string parameters, ImageOpenOptions options, VhdCryptoOptions? crypto)
    {
        int colon = parameters.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            throw new ImageOpenException(parameters, Errno.EINVAL, "params must be type:path");
        }

        string type = parameters[..colon];
        if (type.Length > 31)
        {
            throw new ImageOpenException(parameters, Errno.ENAMETOOLONG, "disk type name longer than 31 characters");
        }

        if (Opener.Find(type) is null)
        {
            throw new ImageOpenException(parameters, Array.IndexOf(s_notBuilt, type) >= 0 ? Errno.ENOSYS : Errno.ENOENT, $"disk type '{type}' is not supported");
        }

        ImageOpener opener = crypto is null ? Opener : new ImageOpener(new RawImageDriver(), new VhdCryptoImageDriver(crypto));
        return opener.Open(type, parameters[(colon + 1)..], options);
    }
}
