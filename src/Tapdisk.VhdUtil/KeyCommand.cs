using System.Globalization;
using Tapdisk.Abi;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>
/// vhd-util key: calculate, set, check and print the keyhash in a VHD's batmap header (or its extended attribute), with blktap's messages and
/// exit codes (data-plane.md 3.3, reference-transcript.md 7). Diagnostics go to stderr; keys are never printed.
/// </summary>
internal static class KeyCommand
{
    public const string Usage =
        "usage:\n" +
        "-C -k KEYPATH [-N NONCE]: calculate keyhash for KEYPATH\n" +
        "-s -n NAME <-k KEYPATH> | -H HASH> [-N NONCE]: set keyhash for NAME\n" +
        "-c -n NAME <-k KEYPATH>: check keyhash for NAME\n" +
        "-p -n NAME: print keyhash for NAME\n" +
        "-h help\n";

    private const string CipherTag = ",aes-xts-plain,";

    private enum Mode
    {
        None,
        Calculate,
        Set,
        Check,
        Print,
    }

    public static int Run(string[] args)
    {
        var opt = new GetOpt(args, "n:k:N:H:Cscph");
        string? name = null, keyPath = null, nonceHex = null, hashHex = null;
        Mode mode = Mode.None;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': name = arg; break;
                case 'k': keyPath = arg; break;
                case 'N': nonceHex = arg; break;
                case 'H': hashHex = arg; break;
                case 'C': mode = Mode.Calculate; break;
                case 's': mode = Mode.Set; break;
                case 'c': mode = Mode.Check; break;
                case 'p': mode = Mode.Print; break;
                case 'h':
                    Console.Error.Write(Usage);
                    return 0;
                default:
                    return UsageError();
            }
        }

        return mode switch
        {
            Mode.Calculate when keyPath is not null => Calculate(keyPath, nonceHex),
            Mode.Set when name is not null && (keyPath is not null || hashHex is not null) => Set(name, keyPath, hashHex, nonceHex),
            Mode.Check when name is not null && keyPath is not null => Check(name, keyPath),
            Mode.Print when name is not null => Print(name),
            _ => UsageError(),
        };
    }

    private static int Calculate(string keyPath, string? nonceHex)
    {
        byte[] nonce = new byte[VhdKeyhash.NonceSize];
        if (nonceHex is not null && !TryParseHex("vhd_util_calculate_keyhash", nonceHex, nonce))
        {
            return Fail("calculating keyhash failed", -Errno.EINVAL);
        }

        if (!TryReadKey(keyPath, out VhdKey? key, out int error))
        {
            return Fail("calculating keyhash failed", error);
        }

        using (key)
        {
            if (!TryCalculate(keyPath, key!, nonce, out byte[]? hash))
            {
                return Fail("calculating keyhash failed", -Errno.EINVAL);
            }

            Console.Out.Write(Convert.ToHexStringLower(hash!) + "\n");
            return 0;
        }
    }

    private static int Set(string name, string? keyPath, string? hashHex, string? nonceHex)
    {
        const string failed = "setting key failed";
        byte[] nonce = new byte[VhdKeyhash.NonceSize];
        if (nonceHex is not null && !TryParseHex("vhd_util_set_hex", nonceHex, nonce))
        {
            return Fail(failed, -Errno.EINVAL);
        }

        byte[] hash = new byte[VhdKeyhash.HashSize];
        if (keyPath is not null)
        {
            if (!KeyNameMatches(name, keyPath))
            {
                Console.Error.Write($"vhd_util_set_keyhash: Invalid key name {keyPath}\n");
                return Fail(failed, -1);
            }

            if (!TryReadKey(keyPath, out VhdKey? key, out int error))
            {
                return Fail(failed, error);
            }

            using (key)
            {
                if (!TryCalculate(keyPath, key!, nonce, out byte[]? computed))
                {
                    return Fail(failed, -Errno.EINVAL);
                }

                hash = computed!;
            }
        }
        else if (!TryParseHex("vhd_util_set_hex", hashHex!, hash))
        {
            return Fail(failed, -Errno.EINVAL);
        }

        try
        {
            VhdKeyhashStore.Write(name, new VhdKeyhash(nonce, hash));
            return 0;
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            Console.Error.Write($"vhd_util_set_keyhash: {name}: {Reason(e)}\n");
            return Fail(failed, -StorageErrors.ToErrno(e));
        }
    }

    private static int Check(string name, string keyPath)
    {
        const string failed = "key check failed";
        if (!KeyNameMatches(name, keyPath))
        {
            Console.Error.Write($"vhd_util_check_key: Invalid key name {keyPath}\n");
            return Fail(failed, -1);
        }

        if (!TryReadKeyhash(name, out VhdKeyhash? keyhash, out int openError))
        {
            return -openError;
        }

        if (keyhash is null)
        {
            Console.Error.Write("vhd_util_check_key: this vhd has no keyhash\n");
            return Fail(failed, -Errno.EINVAL);
        }

        if (!TryReadKey(keyPath, out VhdKey? key, out int error))
        {
            return Fail(failed, error);
        }

        using (key)
        {
            if (!TryCalculate(keyPath, key!, keyhash.Nonce, out _))
            {
                Console.Error.Write($"vhd_util_check_key: failed to calculate keyhash: {-Errno.EINVAL}\n");
                return Fail(failed, -Errno.EINVAL);
            }

            if (!keyhash.Matches(key!))
            {
                Console.Error.Write("vhd_util_check_key: key does not match keyhash\n");
                return Fail(failed, -Errno.EINVAL);
            }

            return 0;
        }
    }

    private static int Print(string name)
    {
        if (!TryReadKeyhash(name, out VhdKeyhash? keyhash, out int error))
        {
            return -error;
        }

        Console.Out.Write((keyhash is null ? "none" : keyhash.ToString()) + "\n");
        return 0;
    }

    /// <summary>The key file's base name must start with "&lt;vhd name cut at .vhd&gt;,aes-xts-plain,&lt;512|256&gt;.key".</summary>
    private static bool KeyNameMatches(string vhdName, string keyPath)
    {
        string keyName = Path.GetFileName(keyPath);
        string prefix = VhdKeyDirectory.KeyBaseName(vhdName) + CipherTag;
        return keyName.StartsWith(prefix + "512.key", StringComparison.Ordinal) || keyName.StartsWith(prefix + "256.key", StringComparison.Ordinal);
    }

    /// <summary>SHA-256(nonce ‖ key), after checking the size the file name promises (",512.key" = 64 bytes).</summary>
    private static bool TryCalculate(string keyPath, VhdKey key, byte[] nonce, out byte[]? hash)
    {
        hash = null;
        string keyName = Path.GetFileName(keyPath);
        int tag = keyName.IndexOf(CipherTag, StringComparison.Ordinal);
        if (tag >= 0 && int.TryParse(keyName.AsSpan(tag + CipherTag.Length, Math.Min(3, keyName.Length - tag - CipherTag.Length)), NumberStyles.None, CultureInfo.InvariantCulture, out int bits)
            && bits / 8 != key.Length)
        {
            Console.Error.Write($"vhd_util_calculate_keyhash: incorrect key size: {bits / 8} != {key.Length}\n");
            return false;
        }

        hash = key.ComputeKeyhash(nonce);
        return true;
    }

    private static bool TryReadKey(string keyPath, out VhdKey? key, out int error)
    {
        key = null;
        error = 0;
        try
        {
            key = VhdKey.ReadFile(keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            error = -StorageErrors.ToErrno(e);
            Console.Error.Write($"vhd_util_read_key: failed to read key {keyPath}: {error}\n");
            return false;
        }

        Console.Error.Write($"vhd_util_read_key: using keyfile {keyPath}, Size (bytes) {key.Length}\n");
        return true;
    }

    private static bool TryReadKeyhash(string name, out VhdKeyhash? keyhash, out int error)
    {
        keyhash = null;
        error = 0;
        try
        {
            keyhash = VhdKeyhashStore.Read(name);
            return true;
        }
        catch (Exception e) when (e is IOException or ImageFormatException or ImageOpenException or UnauthorizedAccessException)
        {
            error = -StorageErrors.ToErrno(e);
            Console.Error.Write($"failed to open {name}: {error}\n");
            return false;
        }
    }

    private static bool TryParseHex(string who, string text, byte[] destination)
    {
        if (text.Length != destination.Length * 2)
        {
            Console.Error.Write($"{who}: invalid size for hex string\n");
            return false;
        }

        for (int i = 0; i < destination.Length; i++)
        {
            if (!byte.TryParse(text.AsSpan(i * 2, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out destination[i]))
            {
                Console.Error.Write($"{who}: invalid hex string\n");
                return false;
            }
        }

        return true;
    }

    private static string Reason(Exception e) => e is ImageOpenException open ? open.Message[(open.FilePath.Length + 2)..] : e.Message;

    private static int Fail(string what, int negativeError)
    {
        Console.Error.Write($"{what}: {negativeError}\n");
        return -negativeError;
    }

    private static int UsageError()
    {
        Console.Error.Write(Usage);
        return Errno.EINVAL;
    }
}
