using System.Buffers.Binary;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// blktap's undo journal for offline metadata changes (data-plane.md 1.15): a 512-byte "vjournal" header, then
/// checksummed entries each holding the original bytes of one region of the VHD. The header, which carries the
/// entry counts, is written and synced only after every entry is on disk, so a journal is either complete or empty.
/// </summary>
public sealed class VhdJournal
{
    public const int HeaderSize = 512;
    public const int EntryHeaderSize = 32;
    public const ulong EntryCookie = 0xAAAA12344321AAAA;

    private const int UuidOffset = 8;
    private const int FooterOffsetOffset = 24;
    private const int DataEntriesOffset = 32;
    private const int MetadataEntriesOffset = 36;
    private const int DataOffsetOffset = 40;
    private const int MetadataOffsetOffset = 48;
    private const int JournalEofOffset = 56;

    private readonly List<Entry> _metadata = [];
    private readonly List<Entry> _data = [];

    /// <summary>Region kinds, as blktap numbers them.</summary>
    public enum EntryType : uint
    {
        PrimaryFooter = 1,
        FooterCopy = 2,
        Header = 3,
        Locator = 4,
        Bat = 5,
        BatmapHeader = 6,
        Batmap = 7,
        Data = 8,
    }

    public static ReadOnlySpan<byte> Cookie => "vjournal"u8;

    public byte[] VhdUuid { get; private set; } = new byte[16];

    /// <summary>Where the VHD's primary footer was; reverting truncates the file just after it.</summary>
    public long VhdFooterOffset { get; private set; }

    public IReadOnlyList<Entry> MetadataEntries => _metadata;

    public IReadOnlyList<Entry> DataEntries => _data;

    public static VhdJournal ForVhd(byte[] uuid, long footerOffset) => new() { VhdUuid = (byte[])uuid.Clone(), VhdFooterOffset = footerOffset };

    /// <summary>Records the current bytes of a region of <paramref name="file"/> (zeros past its end).</summary>
    public void Add(EntryType type, ImageFile file, long offsetBytes, int lengthBytes)
    {
        byte[] payload = new byte[VhdEditor.RoundUpToSector(lengthBytes)];
        file.Read(payload, offsetBytes);
        (type == EntryType.Data ? _data : _metadata).Add(new Entry(type, offsetBytes, payload));
    }

    /// <summary>Writes the journal to a new file: entries, fdatasync, header, fdatasync.</summary>
    public void Save(string journalPath)
    {
        using ImageFile file = ImageFile.Create(journalPath, overwrite: false);
        long at = HeaderSize;
        long metadataOffset = at;
        foreach (Entry e in _metadata)
        {
            at += WriteEntry(file, e, at);
        }

        long dataOffset = at;
        foreach (Entry e in _data)
        {
            at += WriteEntry(file, e, at);
        }

        file.Flush();
        byte[] header = new byte[HeaderSize];
        Cookie.CopyTo(header);
        VhdUuid.CopyTo(header, UuidOffset);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(FooterOffsetOffset), VhdFooterOffset);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(DataEntriesOffset), _data.Count);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(MetadataEntriesOffset), _metadata.Count);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(DataOffsetOffset), dataOffset);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(MetadataOffsetOffset), metadataOffset);

        // Host byte order, not big-endian: a reference quirk kept for compatibility (data-plane.md 1.15).
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(JournalEofOffset), at);
        file.Write(header, 0);
        file.FlushAll();
    }

    /// <summary>Loads a journal; a file without a complete header is an empty journal (it never got committed).</summary>
    public static VhdJournal Load(string journalPath)
    {
        using ImageFile file = ImageFile.Open(journalPath, readOnly: true, direct: false);
        long length = file.Length;
        var journal = new VhdJournal();
        byte[] header = new byte[HeaderSize];
        if (length < HeaderSize || file.Read(header, 0) < HeaderSize || !header.AsSpan(0, 8).SequenceEqual(Cookie))
        {
            return journal;
        }

        journal.VhdUuid = header.AsSpan(UuidOffset, 16).ToArray();
        journal.VhdFooterOffset = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(FooterOffsetOffset));
        int dataCount = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(DataEntriesOffset));
        int metadataCount = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(MetadataEntriesOffset));
        long dataOffset = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(DataOffsetOffset));
        long metadataOffset = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(MetadataOffsetOffset));
        if (dataCount < 0 || metadataCount < 0 || journal.VhdFooterOffset < 0)
        {
            throw new ImageFormatException(journalPath, DataEntriesOffset, "entry counts", "negative count or footer offset");
        }

        ReadEntries(file, journalPath, length, metadataOffset, metadataCount, journal._metadata);
        ReadEntries(file, journalPath, length, dataOffset, dataCount, journal._data);
        return journal;
    }

    /// <summary>Writes every recorded region back (data first, then metadata) and truncates after the old footer.</summary>
    public void Replay(ImageFile vhd)
    {
        foreach (Entry e in _data)
        {
            vhd.Write(e.Payload, e.OffsetBytes);
        }

        foreach (Entry e in _metadata)
        {
            vhd.Write(e.Payload, e.OffsetBytes);
        }

        if (!vhd.IsBlockDevice && _metadata.Count > 0)
        {
            vhd.SetLength(VhdFooterOffset + VhdFooter.Size);
        }

        vhd.FlushAll();
    }

    private static long WriteEntry(ImageFile file, Entry e, long at)
    {
        byte[] head = EncodeEntryHeader(e);
        file.Write(head, at);
        file.Write(e.Payload, at + EntryHeaderSize);
        return EntryHeaderSize + e.Payload.Length;
    }

    private static byte[] EncodeEntryHeader(Entry e)
    {
        byte[] head = new byte[EntryHeaderSize];
        BinaryPrimitives.WriteUInt64BigEndian(head, EntryCookie);
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(8), (uint)e.Type);
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(12), (uint)e.Payload.Length);
        BinaryPrimitives.WriteInt64BigEndian(head.AsSpan(16), e.OffsetBytes);
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(24), Checksum(head, e.Payload));
        return head;
    }

    /// <summary>Byte sum of the entry header (checksum field zero) and the payload, complemented.</summary>
    private static uint Checksum(ReadOnlySpan<byte> head, ReadOnlySpan<byte> payload)
    {
        uint sum = 0;
        for (int i = 0; i < EntryHeaderSize; i++)
        {
            sum += i is >= 24 and < 28 ? 0u : head[i];
        }

        foreach (byte b in payload)
        {
            sum += b;
        }

        return ~sum;
    }

    private static void ReadEntries(ImageFile file, string path, long length, long at, int count, List<Entry> into)
    {
        byte[] head = new byte[EntryHeaderSize];
        for (int i = 0; i < count; i++)
        {
            if (at < HeaderSize || at + EntryHeaderSize > length)
            {
                throw new ImageFormatException(path, at, $"journal entry {i}", "lies past the end of the journal");
            }

            file.ReadExactly(head, at);
            if (BinaryPrimitives.ReadUInt64BigEndian(head) != EntryCookie)
            {
                throw new ImageFormatException(path, at, $"journal entry {i}", "bad entry cookie");
            }

            uint type = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(8));
            uint size = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(12));
            long offset = BinaryPrimitives.ReadInt64BigEndian(head.AsSpan(16));
            if (type is < 1 or > 8 || size % VhdLayout.SectorSize != 0 || size > 64u << 20 || offset < 0 || at + EntryHeaderSize + size > length)
            {
                throw new ImageFormatException(path, at, $"journal entry {i}", $"type {type}, size {size}, offset {offset} out of range");
            }

            byte[] payload = new byte[size];
            file.ReadExactly(payload, at + EntryHeaderSize);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(24));
            uint computed = Checksum(head, payload);
            if (stored != computed)
            {
                throw new ImageFormatException(path, at + 24, $"journal entry {i} checksum", $"stored 0x{stored:x8}, computed 0x{computed:x8}");
            }

            into.Add(new Entry((EntryType)type, offset, payload));
            at += EntryHeaderSize + size;
        }
    }

    /// <summary>One journaled region: its original bytes and where they go back.</summary>
    public sealed record Entry(EntryType Type, long OffsetBytes, byte[] Payload);
}
