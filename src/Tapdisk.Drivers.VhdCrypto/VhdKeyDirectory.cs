namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>
/// OpenXT's key directories (data-plane.md 4.4): <c>&lt;dir&gt;/&lt;name&gt;,aes-xts-plain,&lt;512|256&gt;.key</c> holding the raw key,
/// where name is the VHD's file name cut at its first ".vhd"; 512 is tried before 256.
/// </summary>
public sealed class VhdKeyDirectory
{
    public const string EnvironmentVariable = "TAPDISK3_CRYPTO_KEYDIR";
    public const string DefaultDirectory = "/var/xen/blktap/keys";

    public VhdKeyDirectory(IReadOnlyList<string> directories, bool strict)
    {
        Directories = directories;
        Strict = strict;
    }

    public IReadOnlyList<string> Directories { get; }

    /// <summary>
    /// When set (the directories were configured explicitly), a key file for a VHD without a keyhash is an error
    /// (EACCES), as in OpenXT: the image was meant to be encrypted and is not.
    /// </summary>
    public bool Strict { get; }

    /// <summary>From <c>TAPDISK3_CRYPTO_KEYDIR</c> (comma-separated, strict), else the default directory (lenient).</summary>
    public static VhdKeyDirectory FromEnvironment()
    {
        string? value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(value))
        {
            return new VhdKeyDirectory([DefaultDirectory], strict: false);
        }

        return new VhdKeyDirectory(value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), strict: true);
    }

    /// <summary>The key-file base name: the file name with everything from its first ".vhd" removed.</summary>
    public static string KeyBaseName(string vhdPath)
    {
        string name = Path.GetFileName(vhdPath);
        int cut = name.IndexOf(".vhd", StringComparison.Ordinal);
        return cut >= 0 ? name[..cut] : name;
    }

    /// <summary>The key file name for a key of <paramref name="keyBits"/> (512 or 256) bits.</summary>
    public static string KeyFileName(string vhdPath, int keyBits) => $"{KeyBaseName(vhdPath)},aes-xts-plain,{keyBits}.key";

    /// <summary>The first key file for the VHD across the directories, or null.</summary>
    public string? FindKeyFile(string vhdPath)
    {
        foreach (string directory in Directories)
        {
            foreach (int bits in (ReadOnlySpan<int>)[512, 256])
            {
                string candidate = Path.Combine(directory, KeyFileName(vhdPath, bits));
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }
}
