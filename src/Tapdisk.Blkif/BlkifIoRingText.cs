using System.Buffers.Binary;
using System.Text;
namespace Tapdisk.Blkif;

/// <summary>
/// The content of /dev/shm/vbd3-&lt;domid&gt;-&lt;devid&gt;/io_ring (control-xen.md Part II 4.1): zlib's crc32 of the text in
/// a u64 (little-endian), then "nr_ents N\nreq prod P cons C event E\nrsp prod P pvt V event E\n"; the file is exactly
/// that long.
/// </summary>
public static class BlkifIoRingText
{
    private static readonly uint[] s_table = BuildTable();

    /// <summary>The file's bytes for <paramref name="i"/>.</summary>
    public static byte[] Format(BlkifRingIndexes i)
    {
        string text = FormattableString.Invariant(
            $"nr_ents {i.Entries}\nreq prod {i.ReqProd} cons {i.ReqCons} event {i.ReqEvent}\nrsp prod {i.RspProd} pvt {i.RspProdPvt} event {i.RspEvent}\n");
        byte[] page = new byte[8 + Encoding.ASCII.GetByteCount(text)];
        int length = Encoding.ASCII.GetBytes(text, page.AsSpan(8));
        BinaryPrimitives.WriteUInt64LittleEndian(page, Crc32(page.AsSpan(8, length)));
        return page;
    }

    /// <summary>zlib's crc32 (polynomial 0xEDB88320, reflected, initial and final XOR 0xFFFFFFFF).</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc = s_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return ~crc;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }
}
