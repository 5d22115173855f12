using System.Buffers.Binary;
using Tapdisk.Storage;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>Generates corrupt images from valid ones by patching metadata in place (no committed binaries).</summary>
internal static class CorruptVhd
{
    public const long Size = 8L * MiB;

    /// <summary>A closed 8 MiB dynamic VHD with block 0 full and block 1 partly written; returns the shadow content.</summary>
    public static byte[] CreateWithData(string path)
    {
        byte[] shadow = new byte[Size];
        VhdCreator.CreateDynamic(path, Size);
        using IBlockImage image = Open(path);
        Write(image, shadow, 0, Pattern(2 * MiB, 90));
        Write(image, shadow, (2 * MiB) + 4096, Pattern(65536, 91));
        return shadow;
    }

    public static void PatchBytes(string path, long offset, ReadOnlySpan<byte> bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        f.Write(bytes);
    }

    public static void FlipByte(string path, long offset)
    {
        byte[] b = File.ReadAllBytes(path);
        PatchBytes(path, offset, [(byte)(b[offset] ^ 0x5A)]);
    }

    /// <summary>Rewrites both footer copies through <paramref name="change"/>, with a valid checksum.</summary>
    public static void PatchFooters(string path, Action<VhdFooter> change)
    {
        long length = new FileInfo(path).Length;
        byte[] bytes = File.ReadAllBytes(path);
        VhdFooter footer = VhdFooter.Read(bytes.AsSpan((int)length - VhdFooter.Size));
        change(footer);
        footer.UpdateChecksum();
        byte[] buffer = new byte[VhdFooter.Size];
        footer.Write(buffer);
        PatchBytes(path, 0, buffer);
        PatchBytes(path, length - VhdFooter.Size, buffer);
    }

    /// <summary>Rewrites the dynamic header; the checksum is recomputed unless <paramref name="keepChecksum"/>.</summary>
    public static void PatchHeader(string path, Action<VhdDynamicHeader> change, bool keepChecksum = false)
    {
        byte[] bytes = File.ReadAllBytes(path);
        VhdDynamicHeader header = VhdDynamicHeader.Read(bytes.AsSpan(512, VhdDynamicHeader.Size));
        change(header);
        if (!keepChecksum)
        {
            header.UpdateChecksum();
        }

        byte[] buffer = new byte[VhdDynamicHeader.Size];
        header.Write(buffer);
        PatchBytes(path, 512, buffer);
    }

    public static uint ReadBat(string path, int block) => BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(path).AsSpan(1536 + (block * 4)));

    public static void PatchBat(string path, int block, uint entry)
    {
        byte[] buffer = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(buffer, entry);
        PatchBytes(path, 1536 + (block * 4), buffer);
    }

    /// <summary>Replaces every occurrence of a locator target name in the payloads (same length keeps the layout).</summary>
    public static void RetargetLocators(string path, string oldName, string newName)
    {
        // Only past the header, batmap and BAT (the payloads start at 0xC00): the header's UTF-16BE name stays.
        byte[] bytes = File.ReadAllBytes(path);
        Span<byte> payloads = bytes.AsSpan(0xC00, bytes.Length - 0xC00 - VhdFooter.Size);
        Replace(payloads, System.Text.Encoding.UTF8.GetBytes(oldName), System.Text.Encoding.UTF8.GetBytes(newName));
        Replace(payloads, System.Text.Encoding.Unicode.GetBytes(oldName), System.Text.Encoding.Unicode.GetBytes(newName));
        File.WriteAllBytes(path, bytes);
    }

    private static void Replace(Span<byte> haystack, byte[] from, byte[] to)
    {
        for (int i = 0; i + from.Length <= haystack.Length; i++)
        {
            if (haystack.Slice(i, from.Length).SequenceEqual(from))
            {
                to.CopyTo(haystack[i..]);
            }
        }
    }
}
