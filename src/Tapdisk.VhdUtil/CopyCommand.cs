using System.Security.Cryptography;
using Tapdisk.Abi;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Drivers.VhdCrypto;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>
/// "vhd-util copy -n SRC -N DST [-k KEYFILE | -E]": a standalone copy of SRC's guest data (the whole chain behind it,
/// flattened), optionally encrypted with the key and a zero nonce (data-plane.md 3.4, reference-transcript.md 10.7).
/// </summary>
internal static class CopyCommand
{
    public const string Usage = "options: -n <name> -N <new VHD name> [-k <keyfile> | -E (pass encryption key on stdin)] [-h help] \n";

    // One VHD block per step: whole-block reads keep chain lookups cheap, and zero runs inside it are skipped.
    private const int ChunkBytes = VhdLayout.BlockSize;

    /// <summary>Test hook: when set, the copy fails with EIO after this many chunks (checks that no half copy is left).</summary>
    private const string FailAfterVariable = "TAPDISK_VHD_UTIL_COPY_FAIL_AFTER";

    public static int Run(string[] args)
    {
        var opt = new GetOpt(args, "n:N:k:Eh");
        string? source = null, destination = null, keyPath = null;
        bool keyOnStdin = false;
        int c;
        while ((c = opt.Next(out string? arg)) != -1)
        {
            switch (c)
            {
                case 'n': source = arg; break;
                case 'N': destination = arg; break;
                case 'k': keyPath = arg; break;
                case 'E': keyOnStdin = true; break;
                default: return Cli.UsageError(Usage);
            }
        }

        if (source is null || destination is null)
        {
            Console.Out.Write(Usage);
            Console.Error.WriteLine("Must supply both existing and new VHD names");
            return Errno.EINVAL;
        }

        if (keyPath is not null && keyOnStdin)
        {
            return Cli.UsageError(Usage);
        }

        VhdKey? key = null;
        try
        {
            if (keyPath is not null || keyOnStdin)
            {
                int error = keyOnStdin ? TryReadStdinKey(out key) : TryReadKeyFile(keyPath!, out key);
                if (error != 0)
                {
                    return error;
                }
            }

            return Copy(source, destination, key);
        }
        finally
        {
            key?.Dispose();
        }
    }

    /// <summary>True when <paramref name="source"/> opens on its own, without its parents, as a differencing VHD.</summary>
    private static bool IsDifferencingAlone(string source)
    {
        try
        {
            using VhdImage single = VhdImage.OpenSingle(source, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
            return single.DiskType == VhdDiskType.Differencing;
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            return false;
        }
    }

    private static int Copy(string source, string destination, VhdKey? key)
    {
        IBlockImage src;
        bool fixedSource;
        try
        {
            src = OpenSource(source, key, out fixedSource);
        }
        catch (Exception e) when (Cli.IsImageError(e))
        {
            // Only the reference's one line, on stdout (reference-transcript.md 10.7).
            if (IsDifferencingAlone(source))
            {
                // The file itself opens, so the fault is further down its chain (a parent missing or replaced). The
                // reference never opens the chain: it fails creating a differencing copy, and says so.
                Console.Out.WriteLine($"error creating {destination}: -{Errno.EINVAL}");
                return Errno.EINVAL;
            }

            int errno = StorageErrors.ToErrno(e);
            Console.Out.WriteLine($"error opening {source}: -{errno}");

            return errno;
        }

        // Built under a temporary name beside the destination and renamed into place only when complete, so a
        // failed or killed copy never leaves a file that looks like a valid (but partial) VHD at the new name.
        string full = Path.GetFullPath(destination);
        string temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.copy-{Environment.ProcessId}");
        using (src)
        {
            try
            {
                // The reference creates the copy with the source's disk type, so a differencing source fails with
                // "error creating DST: -22" (reference-transcript.md 10.7). We flatten the chain into a standalone
                // image instead, which is what copy is documented to do (data-plane.md 3.4).
                if (fixedSource && key is null)
                {
                    VhdCreator.CreateFixed(temporary, src.SizeBytes);
                }
                else
                {
                    VhdCreator.CreateDynamic(temporary, src.SizeBytes);
                }

                if (key is not null)
                {
                    byte[] nonce = new byte[VhdKeyhash.NonceSize];
                    VhdKeyhashStore.Write(temporary, new VhdKeyhash(nonce, key.ComputeKeyhash(nonce)));
                }
            }
            catch (Exception e) when (Cli.IsImageError(e))
            {
                TryDelete(temporary);
                int errno = StorageErrors.ToErrno(e);
                Console.Error.WriteLine(e.Message);
                Console.Out.WriteLine($"error creating {destination}: -{errno}");
                return errno;
            }

            try
            {
                CopyData(src, temporary, key);
                Cli.CrashHook()?.Invoke("copy-rename");
                File.Move(temporary, full, overwrite: true);
                return 0;
            }
            catch (Exception e) when (Cli.IsImageError(e))
            {
                TryDelete(temporary);
                int errno = StorageErrors.ToErrno(e);
                Console.Error.WriteLine(e.Message);
                Console.Out.WriteLine($"error copying {source} to {destination}: -{errno}");
                return errno;
            }
        }
    }

    /// <summary>
    /// Opens the source chain read-only. An encrypted source is decrypted with the given key when its keyhash
    /// matches; without a matching key the open is refused (ENOKEY) rather than copying ciphertext as if it were data.
    /// </summary>
    private static IBlockImage OpenSource(string source, VhdKey? key, out bool fixedSource)
    {
        bool keyed;
        using (VhdImage leaf = VhdImage.OpenSingle(source, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false }))
        {
            fixedSource = leaf.DiskType == VhdDiskType.Fixed;
            keyed = VhdKeyhash.Of(leaf) is not null;
        }

        var options = new VhdCryptoOptions { Key = keyed ? key : null };
        var opener = new ImageOpener(new RawImageDriver(), new VhdCryptoImageDriver(options));
        return opener.Open("vhd", source, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
    }

    /// <summary>
    /// Writes every non-zero sector run of the source into the new image through our VHD driver (encrypting when
    /// keyed). Zero sectors are left unallocated: they read back as zeros, encrypted or not. The reference instead
    /// writes the unallocated sectors of an allocated block as plaintext zeros and marks them allocated, so its
    /// encrypted copies decrypt those sectors to garbage (data-plane.md 3.4); we do not copy that defect.
    /// </summary>
    private static void CopyData(IBlockImage src, string destination, VhdKey? key)
    {
        IImageDriver driver = key is null ? new VhdImageDriver() : new VhdCryptoImageDriver(new VhdCryptoOptions { Key = key });
        long failAfter = long.TryParse(Environment.GetEnvironmentVariable(FailAfterVariable), out long n) ? n : -1;
        byte[] buffer = new byte[ChunkBytes];
        var extents = new ExtentList();
        Action<string>? crash = Cli.CrashHook();
        try
        {
            // No per-allocation fsync ordering: the file is unpublished until it is complete, synced and renamed.
            var writeOptions = ImageOpenOptions.ReadWrite with { DirectIo = false, SafeAllocation = false };
            using (IBlockImage dst = new ImageOpener(driver).Open("vhd", destination, writeOptions))
            {
                long chunks = 0;
                for (long offset = 0; offset < src.SizeBytes; offset += ChunkBytes)
                {
                    if (failAfter >= 0 && chunks++ == failAfter)
                    {
                        throw new ErrnoIOException(Errno.EIO, destination, "copy (test failure injected by " + FailAfterVariable + ")");
                    }

                    int length = (int)Math.Min(ChunkBytes, src.SizeBytes - offset);
                    if (ReadsAsZeros(src, offset, length, extents))
                    {
                        continue;   // nothing allocated anywhere in the chain here: skip the read (empty disks copy fast)
                    }

                    crash?.Invoke("copy-chunk");
                    Memory<byte> chunk = buffer.AsMemory(0, length);
                    src.ReadAsync(offset, chunk).AsTask().GetAwaiter().GetResult();
                    WriteNonZeroRuns(dst, offset, chunk);
                }

                dst.FlushAsync().AsTask().GetAwaiter().GetResult();
            }

            // The driver's close rewrote the footers and batmap; make them durable before the rename publishes them.
            using SafeFdHandle fd = PosixFile.Open(destination, OpenFlags.ReadOnly);
            PosixFile.Sync(fd, destination);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    private static bool ReadsAsZeros(IBlockImage src, long offset, int length, ExtentList extents)
    {
        if ((src.Capabilities & ImageCapabilities.Extents) == 0)
        {
            return false;
        }

        extents.Clear();
        src.GetExtentsAsync(offset, length, extents).AsTask().GetAwaiter().GetResult();
        foreach (ImageExtent e in extents.AsSpan())
        {
            if ((e.Flags & ExtentFlags.Zero) == 0)
            {
                return false;
            }
        }

        return extents.LengthBytes == length;
    }

    private static void WriteNonZeroRuns(IBlockImage dst, long offset, Memory<byte> chunk)
    {
        const int Sector = VhdLayout.SectorSize;
        int sectors = chunk.Length / Sector;
        int s = 0;
        while (s < sectors)
        {
            while (s < sectors && IsZero(chunk.Span.Slice(s * Sector, Sector)))
            {
                s++;
            }

            int start = s;
            while (s < sectors && !IsZero(chunk.Span.Slice(s * Sector, Sector)))
            {
                s++;
            }

            if (s > start)
            {
                dst.WriteAsync(offset + ((long)start * Sector), chunk.Slice(start * Sector, (s - start) * Sector)).AsTask().GetAwaiter().GetResult();
            }
        }
    }

    private static bool IsZero(ReadOnlySpan<byte> sector) => sector.IndexOfAnyExcept((byte)0) < 0;

    private static int TryReadKeyFile(string path, out VhdKey? key)
    {
        key = null;
        try
        {
            key = VhdKey.ReadFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            int errno = StorageErrors.ToErrno(e);
            Console.Error.WriteLine($"failed to read key {path}: -{errno}");
            return errno;
        }

        return CheckKeySize(ref key);
    }

    /// <summary>-E: the raw key on stdin, exactly 32 or 64 bytes as tap-ctl open -E takes it.</summary>
    private static int TryReadStdinKey(out VhdKey? key)
    {
        key = null;
        byte[] buffer = GC.AllocateUninitializedArray<byte>(VhdKey.MaxLength + 1, pinned: true);
        try
        {
            using Stream stdin = Console.OpenStandardInput();
            int total = 0, n;
            while (total < buffer.Length && (n = stdin.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += n;
            }

            if (total is not (32 or 64))
            {
                Console.Error.WriteLine($"encryption key on stdin must be 32 or 64 bytes, got {(total > VhdKey.MaxLength ? "more than " + VhdKey.MaxLength : total)}");
                return Errno.EINVAL;
            }

            key = new VhdKey(buffer.AsSpan(0, total));
            return 0;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    private static int CheckKeySize(ref VhdKey? key)
    {
        if (key!.Length is 32 or 64)
        {
            return 0;
        }

        Console.Error.WriteLine($"encryption key must be 32 or 64 bytes, not {key.Length}");
        key.Dispose();
        key = null;
        return Errno.EINVAL;
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Cleanup after a failure that is already being reported; a leftover hidden temp file is harmless.
        }
    }
}
