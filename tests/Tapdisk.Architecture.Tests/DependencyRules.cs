namespace Tapdisk.Architecture.Tests;

/// <summary>STYLE.md section 2 as a table: which src projects each src project may reference.</summary>
public static class DependencyRules
{
    public const string Abi = "Tapdisk.Abi";
    public const string Storage = "Tapdisk.Storage";
    public const string DriversRaw = "Tapdisk.Drivers.Raw";
    public const string DriversVhd = "Tapdisk.Drivers.Vhd";
    public const string DriversVhdCrypto = "Tapdisk.Drivers.VhdCrypto";
    public const string DriversNbd = "Tapdisk.Drivers.Nbd";
    public const string Blkif = "Tapdisk.Blkif";
    public const string Nbd = "Tapdisk.Nbd";
    public const string Control = "Tapdisk.Control";
    public const string Daemon = "Tapdisk.Daemon";
    public const string TapCtl = "Tapdisk.TapCtl";
    public const string VhdUtil = "Tapdisk.VhdUtil";
    public const string XenStore = "Tapdisk.XenStore";
    public const string Tapback = "Tapdisk.Tapback";
    public const string Logging = "Tapdisk.Logging";
    public const string FiltersCbt = "Tapdisk.Filters.Cbt";
    public const string FiltersMirror = "Tapdisk.Filters.Mirror";
    public const string CbtUtil = "Tapdisk.CbtUtil";
    public const string FiltersCache = "Tapdisk.Filters.Cache";

    /// <summary>The executables: only they compose layers, and nothing references them.</summary>
    public static IReadOnlySet<string> Executables { get; } = new HashSet<string>(StringComparer.Ordinal) { Daemon, TapCtl, VhdUtil, Tapback, CbtUtil };

    /// <summary>
    /// Allowed references per project. A project that does not exist yet is simply absent from the tree; a src project
    /// missing from this table fails the test until its layer is decided here.
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlySet<string>> MayReference { get; } = new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal)
    {
        // Bottom layer: Linux and Xen ABI only.
        [Abi] = Set(),
        // Driver contract; Abi for aligned memory and fallocate.
        [Storage] = Set(Abi),
        [DriversRaw] = Set(Storage, Abi),
        [DriversVhd] = Set(Storage, Abi),
        [DriversVhdCrypto] = Set(Storage, Abi, DriversVhd),
        // The NBD client: shares only the wire constants' source file with the Nbd server, never the project.
        [DriversNbd] = Set(Storage, Abi),
        // Filters wrap the next layer through the Storage contract: never a concrete driver.
        [FiltersCbt] = Set(Storage, Abi),
        [FiltersMirror] = Set(Storage, Abi),
        [FiltersCache] = Set(Storage, Abi),
        // Protocol front ends: never a concrete driver, each other, Control or Daemon.
        [Blkif] = Set(Storage, Abi),
        [Nbd] = Set(Storage),
        // Pure codec plus socket client and server: BCL only.
        [Control] = Set(),
        // XenStore wire protocol client: BCL only.
        [XenStore] = Set(),
        // The daemons' stderr + syslog log with rate limiting: BCL only.
        [Logging] = Set(),
        // Executables.
        [Daemon] = Set(Abi, Storage, DriversRaw, DriversVhd, DriversVhdCrypto, DriversNbd, FiltersCbt, FiltersMirror, FiltersCache, Blkif, Nbd, Control, Logging),
        [TapCtl] = Set(Control, Abi),
        [VhdUtil] = Set(Abi, Storage, DriversRaw, DriversVhd, DriversVhdCrypto),
        [Tapback] = Set(XenStore, Control, Abi, Logging),
        [CbtUtil] = Set(FiltersCbt, Storage, Abi),
    };

    /// <summary>Projects allowed to set AllowUnsafeBlocks (STYLE.md section 4 rule 1).</summary>
    public static IReadOnlySet<string> MayUseUnsafe { get; } = Set(Abi, Blkif);

    /// <summary>The only project that may declare P/Invokes.</summary>
    public const string InteropProject = Abi;

    private static HashSet<string> Set(params string[] names) => new(names, StringComparer.Ordinal);
}
