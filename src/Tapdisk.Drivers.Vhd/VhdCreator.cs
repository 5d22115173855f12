using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>Writes new VHDs in exactly blktap's layout (data-plane.md 1.1, 8.3) so blktap, vhd-util and qemu accept them.</summary>
public static class VhdCreator
{
    /// <summary>Creates (or overwrites, as vhd-util does) a dynamic VHD of <paramref name="sizeBytes"/>.</summary>
    /// <param name="path">Where to create it.</param>
    /// <param name="sizeBytes">Virtual size; must be a multiple of 512 and at most 2040 GiB.</param>
    /// <param name="maxSizeBytes">Preallocate BAT and batmap for growing up to this size (vhd-util -S).</param>
    public static void CreateDynamic(string path, long sizeBytes, long maxSizeBytes = 0)
    {
        CheckSize(path, sizeBytes);
        VhdFooter footer = NewFooter(sizeBytes, VhdDiskType.Dynamic);
        VhdDynamicHeader header = NewHeader(Math.Max(sizeBytes, maxSizeBytes));
        Write(path, footer, header, keyhashRecord: null, locators: []);
    }

    /// <summary>Creates a fixed VHD: the zeroed data (sparse) followed by one footer.</summary>
    public static void CreateFixed(string path, long sizeBytes)
    {
        CheckSize(path, sizeBytes);
        VhdFooter footer = NewFooter(sizeBytes, VhdDiskType.Fixed);
        footer.DataOffset = VhdFooter.FixedDataOffset;
        footer.UpdateChecksum();
        byte[] bytes = new byte[VhdFooter.Size];
        footer.Write(bytes);
        CreateFile(path, file =>
        {
            file.SetLength(sizeBytes + VhdFooter.Size);
            file.Write(bytes, sizeBytes);
        });
    }

    /// <summary>
    /// Creates a differencing child of <paramref name="parentPath"/> (a VHD, or raw with <paramref name="parentIsRaw"/>):
    /// same size, parent UUID/timestamp/name, MacX + W2ku + W2ru relative locators, keyhash copied from the parent.
    /// </summary>
    public static void CreateDifferencing(string childPath, string parentPath, bool parentIsRaw = false, long maxSizeBytes = 0)
    {
        string parentCanonical = ImageOpener.CanonicalPath(parentPath);
        long sizeBytes;
        byte[] parentUuid = new byte[16];
        byte[]? parentKeyhash = null;
        if (parentIsRaw)
        {
            sizeBytes = new FileInfo(parentCanonical).Length;
        }
        else
        {
            using VhdImage parent = VhdImage.OpenSingle(parentCanonical, ImageOpenOptions.ReadOnlyDefault with { DirectIo = false });
            sizeBytes = parent.SizeBytes;
            parentUuid = parent.Footer.UniqueId;
            // The keyhash may sit in the parent's batmap header or, for a non-blktap parent, in its extended attribute.
            byte[] record = new byte[VhdExtendedAttributes.KeyhashRecordSize];
            parent.ReadKeyhashRecord(record);
            parentKeyhash = record[0] == 1 ? record : null;
        }

        VhdFooter footer = NewFooter(sizeBytes, VhdDiskType.Differencing);
        VhdDynamicHeader header = NewHeader(Math.Max(sizeBytes, maxSizeBytes));
        header.ParentUuid = parentUuid;
        header.ParentTimestamp = (uint)Math.Max(0, new DateTimeOffset(File.GetLastWriteTimeUtc(parentCanonical)).ToUnixTimeSeconds() - 946684800);
        header.ParentName = System.IO.Path.GetFileName(parentCanonical);

        string childCanonical = System.IO.Path.GetFullPath(childPath);
        string relative = VhdParentPath.Relative(childCanonical, parentCanonical);
        byte[] windows = VhdParentPath.EncodeWindows(relative);
        byte[][] payloads = [VhdParentPath.EncodeMacX(relative), windows, windows];
        uint[] codes = [VhdParentLocator.MacX, VhdParentLocator.W2ku, VhdParentLocator.W2ru];
        Write(childPath, footer, header, parentKeyhash, [.. codes.Zip(payloads)]);
    }

    private static void CheckSize(string path, long sizeBytes)
    {
        if (sizeBytes < 0 || sizeBytes % VhdLayout.SectorSize != 0)
        {
            throw new ImageOpenException(path, Errno.EINVAL, $"size {sizeBytes} is not a whole number of 512-byte sectors");
        }

        if (sizeBytes > VhdLayout.MaxSizeBytes)
        {
            throw new ImageOpenException(path, Errno.EINVAL, $"size {sizeBytes / (1024 * 1024)} MiB exceeds the VHD limit of 2040 GiB ({VhdLayout.MaxSizeBytes / (1024 * 1024)} MiB)");
        }
    }

    private static VhdFooter NewFooter(long sizeBytes, VhdDiskType type)
    {
        var footer = new VhdFooter
        {
            DataOffset = VhdLayout.SectorSize,
            Timestamp = VhdFooter.TimestampNow(),
            OriginalSize = (ulong)sizeBytes,
            CurrentSize = (ulong)sizeBytes,
            Geometry = VhdGeometry.ForSize(sizeBytes).Encoded,
            DiskTypeValue = (uint)type,
            UniqueId = VhdUuid.NewRandom(),
        };
        footer.UpdateChecksum();
        return footer;
    }

    private static VhdDynamicHeader NewHeader(long maxSizeBytes) => new()
    {
        TableOffset = 3 * VhdLayout.SectorSize,
        MaxTableEntries = (uint)VhdLayout.EntriesFor((ulong)maxSizeBytes, VhdLayout.BlockSize),
        BlockSize = VhdLayout.BlockSize,
    };

    private static void Write(string path, VhdFooter footer, VhdDynamicHeader header, byte[]? keyhashRecord, (uint Code, byte[] Payload)[] locators)
    {
        long batBytes = VhdLayout.BatSectors(header.MaxTableEntries) * VhdLayout.SectorSize;
        byte[] bat = new byte[batBytes];
        bat.AsSpan(0, (int)header.MaxTableEntries * 4).Fill(0xFF);

        long batmapHeaderOffset = (long)header.TableOffset + batBytes;
        var batmap = new VhdBatmapHeader
        {
            BatmapOffset = (ulong)batmapHeaderOffset + VhdBatmapHeader.Size,
            BatmapSize = VhdBatmapHeader.SectorsFor(header.MaxTableEntries),
        };
        if (keyhashRecord is not null)
        {
            batmap.SetKeyhashRecord(keyhashRecord);
        }

        // We reserve the full batmap_size in the file (the reference reserves one sector less for some sizes).
        byte[] map = new byte[batmap.BatmapSize * VhdLayout.SectorSize];
        batmap.Checksum = VhdChecksum.ComputeBatmap(map.AsSpan(0, Math.Min(map.Length, VhdBatmapHeader.ChecksummedMapBytes(footer.CurrentSize))), signedBytes: false);

        long next = (long)batmap.BatmapOffset + map.Length;
        var payloadOffsets = new long[locators.Length];
        for (int i = 0; i < locators.Length; i++)
        {
            long space = (locators[i].Payload.Length + VhdLayout.SectorSize - 1) / VhdLayout.SectorSize * VhdLayout.SectorSize;
            header.Locators[i] = new VhdParentLocator(locators[i].Code, (uint)space, (uint)locators[i].Payload.Length, 0, (ulong)next);
            payloadOffsets[i] = next;
            next += space;
        }

        header.UpdateChecksum();
        footer.UpdateChecksum();
        byte[] footerBytes = new byte[VhdFooter.Size];
        footer.Write(footerBytes);
        byte[] headerBytes = new byte[VhdDynamicHeader.Size];
        header.Write(headerBytes);
        byte[] batmapBytes = new byte[VhdBatmapHeader.Size];
        batmap.Write(batmapBytes);

        CreateFile(path, file =>
        {
            file.Write(footerBytes, 0);
            file.Write(headerBytes, (long)footer.DataOffset);
            file.Write(bat, (long)header.TableOffset);
            file.Write(batmapBytes, batmapHeaderOffset);
            file.Write(map, (long)batmap.BatmapOffset);
            for (int i = 0; i < locators.Length; i++)
            {
                byte[] padded = new byte[header.Locators[i].DataSpace];
                locators[i].Payload.CopyTo(padded, 0);
                file.Write(padded, payloadOffsets[i]);
            }

            file.Write(footerBytes, next);
            file.SetLength(next + VhdFooter.Size);
        });
    }

    private static void CreateFile(string path, Action<ImageFile> write)
    {
        ImageFile file = ImageFile.Create(path, overwrite: true);
        try
        {
            write(file);
            file.FlushAll();
            file.Dispose();
        }
        catch
        {
            // vhd-util unlinks a half-made image.
            file.Dispose();
            File.Delete(path);
            throw;
        }
    }
}
