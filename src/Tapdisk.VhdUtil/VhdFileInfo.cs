using System.Buffers.Binary;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.VhdUtil;

/// <summary>Raw metadata of one VHD file, read without the driver's open-time judgement (for check, read and query).</summary>
internal sealed class VhdFileInfo
{
    private VhdFileInfo(string path)
    {
        Path = path;
    }

    public string Path { get; }

    public long Length { get; private set; }

    public VhdFooter? Primary { get; private set; }

    public VhdFooter? Backup { get; private set; }

    /// <summary>The footer in use: the primary if valid, else the backup (as libvhd picks it).</summary>
    public VhdFooter? Footer { get; private set; }

    public VhdDynamicHeader? Header { get; private set; }

    public uint[] Bat { get; private set; } = [];

    public VhdBatmapHeader? Batmap { get; private set; }

    public byte[] BatmapMap { get; private set; } = [];

    /// <summary>The VHD should carry a batmap (tap creator 1.1+), whether or not a valid one was found.</summary>
    public bool BatmapExpected { get; private set; }

    public string?[] LocatorNames { get; } = new string?[VhdDynamicHeader.LocatorCount];

    public static VhdFileInfo Read(string path)
    {
        var info = new VhdFileInfo(path);
        using ImageFile file = ImageFile.Open(path, readOnly: true, direct: false);
        info.Length = file.Length;
        if (info.Length < VhdFooter.Size)
        {
            return info;
        }

        byte[] buffer = new byte[VhdDynamicHeader.Size];
        file.ReadExactly(buffer.AsSpan(0, VhdFooter.Size), info.Length - VhdFooter.Size);
        info.Primary = VhdFooter.Read(buffer);
        file.ReadExactly(buffer.AsSpan(0, VhdFooter.Size), 0);
        info.Backup = VhdFooter.Read(buffer);
        info.Footer = IsGood(info.Primary) ? info.Primary : IsGood(info.Backup) && info.Backup.IsDynamic ? info.Backup : null;
        // Without a good footer the header is still read through the primary, for check's dump of a broken file.
        VhdFooter? footer = info.Footer ?? info.Primary;
        if (footer is null || !footer.IsDynamic || footer.DataOffset > (ulong)(info.Length - VhdDynamicHeader.Size))
        {
            return info;
        }

        file.ReadExactly(buffer, (long)footer.DataOffset);
        VhdDynamicHeader header = VhdDynamicHeader.Read(buffer);
        info.Header = header;
        long entries = Math.Min(header.MaxTableEntries, VhdLayout.EntriesFor(footer.CurrentSize, header.BlockSize <= 0 ? VhdLayout.BlockSize : header.BlockSize));
        if (header.TableOffset + ((ulong)entries * 4) <= (ulong)info.Length)
        {
            byte[] bat = new byte[entries * 4];
            file.ReadExactly(bat, (long)header.TableOffset);
            info.Bat = new uint[entries];
            for (int i = 0; i < entries; i++)
            {
                info.Bat[i] = BinaryPrimitives.ReadUInt32BigEndian(bat.AsSpan(i * 4));
            }
        }

        info.BatmapExpected = VhdMetadataReader.HasBatmap(footer);
        if (info.BatmapExpected)
        {
            long at = (long)VhdLayout.BatmapHeaderOffset(header.TableOffset, header.MaxTableEntries);
            if (at + VhdBatmapHeader.Size <= info.Length)
            {
                byte[] bh = new byte[VhdBatmapHeader.Size];
                file.ReadExactly(bh, at);
                VhdBatmapHeader batmap = VhdBatmapHeader.Read(bh);
                if (batmap.HasValidCookie && batmap.BatmapOffset == (ulong)at + VhdBatmapHeader.Size && batmap.BatmapSize > 0
                    && batmap.BatmapOffset + ((ulong)batmap.BatmapSize * VhdLayout.SectorSize) <= (ulong)info.Length + VhdLayout.SectorSize)
                {
                    info.Batmap = batmap;
                    long mapBytes = Math.Min((long)batmap.BatmapSize * VhdLayout.SectorSize, 64L * 1024 * 1024);
                    byte[] map = new byte[mapBytes];
                    file.Read(map, (long)batmap.BatmapOffset);
                    info.BatmapMap = map;
                }
            }
        }

        for (int i = 0; i < header.Locators.Length; i++)
        {
            VhdParentLocator loc = header.Locators[i];
            if (loc.PlatformCode == VhdParentLocator.None || loc.DataLength == 0 || loc.DataLength > 4096 || (long)loc.DataOffset + loc.DataLength > info.Length)
            {
                continue;
            }

            byte[] payload = new byte[loc.DataLength];
            file.ReadExactly(payload, (long)loc.DataOffset);
            info.LocatorNames[i] = VhdParentPath.Decode(loc.PlatformCode, payload);
        }

        return info;
    }

    public uint ComputedBatmapChecksum()
    {
        if (Batmap is null || Footer is null)
        {
            return 0;
        }

        int summed = Math.Min(VhdBatmapHeader.ChecksummedMapBytes(Footer.CurrentSize), BatmapMap.Length);
        return VhdChecksum.ComputeBatmap(BatmapMap.AsSpan(0, summed), Batmap.Version < VhdBatmapHeader.CurrentVersion);
    }

    public bool BatmapBit(int block) => Batmap is not null && (block >> 3) < BatmapMap.Length && (BatmapMap[block >> 3] & (0x80 >> (block & 7))) != 0;

    private static bool IsGood(VhdFooter footer) => footer.HasValidCookie && footer.HasValidChecksum;
}
