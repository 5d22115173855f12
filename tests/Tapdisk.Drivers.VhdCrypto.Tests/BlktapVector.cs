namespace Tapdisk.Drivers.VhdCrypto.Tests;

/// <summary>The encrypted VHD that blktap's own tapdisk wrote (shared/vectors/blktap-encrypted, beside the repo).</summary>
internal static class BlktapVector
{
    public const long DiskBytes = 8 * 1024 * 1024;

    public static string Directory { get; } = Find();

    public static string EncryptedVhd => Path.Combine(Directory, "enc.vhd");

    public static string EmptyKeyedVhd => Path.Combine(Directory, "enc-empty-keyed.vhd");

    public static string KeyFile => Path.Combine(Directory, "enc,aes-xts-plain,512.key");

    public static byte[] Key => File.ReadAllBytes(KeyFile);

    public static byte[] Plaintext => File.ReadAllBytes(Path.Combine(Directory, "plaintext-3MiB.bin"));

    private static string Find()
    {
        // The repo's shared facts live at ../shared from its root (shared/README.md).
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "vectors", "blktap-encrypted");
            if (System.IO.Directory.Exists(candidate))
            {
                return candidate;
            }

            candidate = Path.Combine(d.FullName, "..", "shared", "vectors", "blktap-encrypted");
            if (File.Exists(Path.Combine(d.FullName, "Tapdisk.sln")) && System.IO.Directory.Exists(candidate))
            {
                return Path.GetFullPath(candidate);
            }
        }

        const string fallback = "/work/shared/vectors/blktap-encrypted";
        if (System.IO.Directory.Exists(fallback))
        {
            return fallback;
        }

        throw new DirectoryNotFoundException($"blktap encrypted-VHD vector not found above {AppContext.BaseDirectory} (expected ../shared/vectors/blktap-encrypted beside the repo)");
    }
}
