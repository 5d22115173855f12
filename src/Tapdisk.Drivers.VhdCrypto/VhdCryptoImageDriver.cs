using System.Security.Cryptography;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.VhdCrypto;

/// <summary>
/// blktap's "vhd" disk type with encryption (data-plane.md 4): opens the VHD driver's image and, layer by layer
/// (parents come back through the opener to this driver), checks the keyhash and attaches the sector cipher.
/// Errors name the file and the rule broken, never the key.
/// </summary>
public sealed class VhdCryptoImageDriver : IImageDriver
{
    private readonly VhdCryptoOptions _options;

    public VhdCryptoImageDriver(VhdCryptoOptions options)
    {
        _options = options;
    }

    public string Name => VhdImageDriver.DriverName;

    public string Description => "Virtual Hard Disk (fixed, dynamic, differencing; blktap batmap; AES-XTS encryption)";

    public IBlockImage Open(string path, ImageOpenOptions options, IImageOpener opener)
    {
        VhdImage image = VhdImage.Open(path, options, opener);
        try
        {
            AttachKey(image);
            return image;
        }
        catch
        {
            image.Dispose();
            throw;
        }
    }

    /// <summary>Applies the per-layer rules of data-plane.md 4.3 (supplied key) and 4.4 (key directory) to one VHD.</summary>
    private void AttachKey(VhdImage image)
    {
        VhdKeyhash? keyhash = VhdKeyhash.Of(image);
        if (_options.Key is { } key)
        {
            if (keyhash is null)
            {
                throw new ImageOpenException(image.Path, Errno.EINVAL, "an encryption key was supplied but this VHD has no keyhash (every VHD of an encrypted chain needs one; vhd-util snapshot copies it)");
            }

            if (!keyhash.Matches(key))
            {
                throw new ImageOpenException(image.Path, Errno.ENOKEY, "the supplied key does not match this VHD's keyhash");
            }

            image.UseCipher(CreateCipher(image.Path, key));
            return;
        }

        VhdKeyDirectory? directory = _options.KeyDirectory;
        if (keyhash is null)
        {
            if (directory is { Strict: true } && directory.FindKeyFile(image.Path) is { } stray)
            {
                throw new ImageOpenException(image.Path, Errno.EACCES, $"key file {stray} exists but this VHD has no keyhash");
            }

            return;
        }

        if (directory is not null && TryKeyFromDirectory(image, keyhash, directory))
        {
            return;
        }

        if (_options.AllowCiphertext)
        {
            return; // explicitly requested raw access: this layer's sectors pass through as stored ciphertext
        }

        // blktap would serve ciphertext here (or EINVAL); we refuse with ENOKEY, which names the real problem.
        string where = directory is null ? string.Empty : $" or found in the key directories ({string.Join(", ", directory.Directories)})";
        throw new ImageOpenException(image.Path, Errno.ENOKEY, $"this VHD is encrypted (it has a keyhash) and no matching key was supplied{where}; refusing to serve ciphertext");
    }

    /// <summary>OpenXT's walk: the key file of this image, then of each ancestor; the first whose key matches is used.</summary>
    private static bool TryKeyFromDirectory(VhdImage image, VhdKeyhash keyhash, VhdKeyDirectory directory)
    {
        for (IBlockImage? layer = image; layer is not null; layer = layer.Parent)
        {
            if (layer is not VhdImage || directory.FindKeyFile(layer.Path) is not { } file)
            {
                continue;
            }

            VhdKey candidate;
            try
            {
                candidate = VhdKey.ReadFile(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new ImageOpenException(image.Path, Errno.EACCES, $"cannot read key file {file}: {e.GetType().Name}");
            }

            using (candidate)
            {
                if (keyhash.Matches(candidate))
                {
                    image.UseCipher(CreateCipher(image.Path, candidate));
                    return true;
                }
            }
        }

        return false;
    }

    private static AesXtsSectorCipher CreateCipher(string path, VhdKey key)
    {
        try
        {
            return new AesXtsSectorCipher(key);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            // These messages describe sizes and rules only; the key bytes are never formatted anywhere.
            throw new ImageOpenException(path, Errno.EINVAL, $"unusable key: {e.Message}");
        }
    }
}
