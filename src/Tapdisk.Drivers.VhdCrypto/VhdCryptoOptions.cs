namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>Where keys for encrypted VHDs come from, and whether ciphertext may be served (tools only).</summary>
public sealed class VhdCryptoOptions
{
    /// <summary>A key supplied by the caller (tap-ctl -E over the control socket); used for every VHD layer.</summary>
    public VhdKey? Key { get; init; }

    /// <summary>Consulted for keyed layers when no key was supplied (OpenXT); null disables the lookup.</summary>
    public VhdKeyDirectory? KeyDirectory { get; init; }

    /// <summary>
    /// Explicit raw access: keyed layers without a key are opened and their stored ciphertext is returned and written
    /// as is, for copy and migration tools. Off by default: unlike blktap, a keyed VHD is never served as ciphertext
    /// silently (data-plane.md 4.3).
    /// </summary>
    public bool AllowCiphertext { get; init; }

    /// <summary>No key, the key directory from the environment, no raw access.</summary>
    public static VhdCryptoOptions FromEnvironment() => new() { KeyDirectory = VhdKeyDirectory.FromEnvironment() };

    public override string ToString() => $"VhdCryptoOptions(key {(Key is null ? "none" : "supplied")}, key dirs {(KeyDirectory is null ? "off" : string.Join(',', KeyDirectory.Directories))}, ciphertext {(AllowCiphertext ? "allowed" : "refused")})";
}
