using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Vhd;

/// <summary>
/// "vhd-util coalesce": copies every sector a differencing VHD holds into its immediate parent (VHD or raw), as
/// data-plane.md 3.4 describes. The child is never written and the chain is not relinked, so the chain reads the
/// same at every instant: the child still covers each sector whose copy in the parent is in flight.
/// </summary>
public static class VhdCoalescer
{
    /// <summary>Coalesces <paramref name="childPath"/> into its parent; returns the number of sectors copied.</summary>
    /// <param name="childPath">The differencing VHD.</param>
    /// <param name="progress">Called with (blocks done, blocks total) once before the first block and after every BAT entry.</param>
    public static long Coalesce(string childPath, Action<int, int>? progress = null)
    {
        using VhdEditor child = VhdEditor.Open(childPath, readOnly: true);
        if (child.Footer.DiskType != VhdDiskType.Differencing)
        {
            throw new NotDifferencingException(childPath);
        }

        VhdDynamicHeader header = child.Header!;
        string childCanonical = ImageOpener.CanonicalPath(childPath);
        string parentPath = VhdMetadataReader.ResolveParent(childPath, childCanonical, header, out string tried)
            ?? throw new ImageOpenException(childPath, Errno.ENOENT, $"parent '{header.ParentName}' not found (locators tried: {tried})");
        using ParentWriter parent = VhdUuid.IsNull(header.ParentUuid) ? ParentWriter.Raw(parentPath) : ParentWriter.Vhd(parentPath, header.ParentUuid, childPath);

        // Everything is validated before the first write: a child larger than its parent would need the parent
        // resized first (the reference fails part-way in that case).
        long childBytes = (long)child.Footer.CurrentSize;
        if (childBytes > parent.SizeBytes)
        {
            throw new ImageOpenException(childPath, Errno.EINVAL, $"child is {childBytes} bytes but parent {parentPath} is {parent.SizeBytes}: resize the parent first");
        }

        bool[] full = child.ReadFullBlocks();
        int spb = child.SectorsPerBlock;
        byte[] data = new byte[spb * VhdLayout.SectorSize];
        long copied = 0;
        progress?.Invoke(0, child.BlockCount);
        for (int block = 0; block < child.BlockCount; block++)
        {
            if (child.GetBatEntry(block) != VhdLayout.Unallocated)
            {
                int blockSectors = (int)Math.Min(spb, (childBytes / VhdLayout.SectorSize) - ((long)block * spb));
                byte[]? bitmap = full[block] ? null : child.ReadBitmap(block);
                int sector = 0;
                while (sector < blockSectors)
                {
                    bool present = true;
                    int run = bitmap is null ? blockSectors : VhdBitmap.RunLength(bitmap, sector, blockSectors - sector, out present);
                    if (!present)
                    {
                        sector += run;
                        continue;
                    }

                    Span<byte> chunk = data.AsSpan(0, run * VhdLayout.SectorSize);
                    child.File.ReadExactly(chunk, child.DataOffsetBytes(block) + ((long)sector * VhdLayout.SectorSize));
                    parent.Write((((long)block * spb) + sector) * VhdLayout.SectorSize, chunk);
                    copied += run;
                    sector += run;
                }

                parent.CommitBlock();
            }

            progress?.Invoke(block + 1, child.BlockCount);
        }

        parent.Finish();
        return copied;
    }

    /// <summary>Thrown for a child that is not a differencing VHD (the reference's EINVAL with its own message).</summary>
    public sealed class NotDifferencingException : IOException
    {
        public NotDifferencingException(string path)
            : base($"{path}: coalescing of non-differencing disks is not supported")
        {
            HResult = Errno.EINVAL;
        }

        public NotDifferencingException()
            : this(string.Empty)
        {
        }

        public NotDifferencingException(string message, Exception innerException)
            : base(message, innerException)
        {
        }
    }

    /// <summary>Where coalesced sectors go: a raw file (pwrite) or a VHD (block allocation plus bitmaps).</summary>
    private sealed class ParentWriter : IDisposable
    {
        private readonly ImageFile? _raw;
        private readonly VhdEditor? _vhd;
        private int _pendingBlock = -1;
        private byte[]? _pendingBitmap;
        private bool _pendingDirty;

        private ParentWriter(ImageFile? raw, VhdEditor? vhd)
        {
            _raw = raw;
            _vhd = vhd;
            SizeBytes = raw?.Length ?? (long)vhd!.Footer.CurrentSize;
        }

        public long SizeBytes { get; }

        public static ParentWriter Raw(string path)
        {
            ImageFile file = ImageFile.Open(path, readOnly: false, direct: false);
            return new ParentWriter(file, null);
        }

        public static ParentWriter Vhd(string path, byte[] expectedUuid, string childPath)
        {
            VhdEditor editor = VhdEditor.Open(path, readOnly: false);
            if (!editor.Footer.UniqueId.AsSpan().SequenceEqual(expectedUuid))
            {
                editor.Dispose();
                throw new ImageFormatException(childPath, VhdFooter.Size + VhdDynamicHeader.ParentUuidOffset, "parent UUID", $"child names parent {VhdUuid.Format(expectedUuid)} but {path} has UUID {VhdUuid.Format(editor.Footer.UniqueId)}");
            }

            return new ParentWriter(null, editor);
        }

        public void Write(long offsetBytes, ReadOnlySpan<byte> data)
        {
            if (_raw is not null)
            {
                _raw.Write(data, offsetBytes);
                return;
            }

            VhdEditor vhd = _vhd!;
            if (!vhd.IsDynamic)
            {
                vhd.File.Write(data, offsetBytes);
                return;
            }

            // A child block maps onto one or more parent blocks (equal block sizes in practice; 2 MiB in blktap).
            int blockBytes = (int)vhd.Header!.BlockSize;
            while (!data.IsEmpty)
            {
                int block = (int)(offsetBytes / blockBytes);
                int within = (int)(offsetBytes % blockBytes);
                int n = Math.Min(data.Length, blockBytes - within);
                if (block != _pendingBlock)
                {
                    CommitBlock();
                    if (vhd.GetBatEntry(block) == VhdLayout.Unallocated)
                    {
                        vhd.AllocateBlock(block);
                    }

                    _pendingBlock = block;
                    _pendingBitmap = vhd.ReadBitmap(block);
                }

                vhd.File.Write(data[..n], vhd.DataOffsetBytes(block) + within);
                int first = within / VhdLayout.SectorSize, count = n / VhdLayout.SectorSize;
                if (!VhdBitmap.AllSet(_pendingBitmap, first, count))
                {
                    VhdBitmap.SetRange(_pendingBitmap, first, count);
                    _pendingDirty = true;
                }

                offsetBytes += n;
                data = data[n..];
            }
        }

        /// <summary>Data first, fdatasync, then the bitmap that makes it visible in the parent.</summary>
        public void CommitBlock()
        {
            if (_pendingBlock >= 0 && _pendingDirty)
            {
                _vhd!.File.Flush();
                _vhd.WriteBitmap(_pendingBlock, _pendingBitmap);
            }

            _pendingBlock = -1;
            _pendingBitmap = null;
            _pendingDirty = false;
        }

        /// <summary>
        /// Makes the parent's trailing and backup footers current and syncs. The batmap is deliberately left as it
        /// was: rewriting the map and its header is two writes that a kill could tear (a stale map only under-reports
        /// full blocks, data-plane.md 1.9).
        /// </summary>
        public void Finish()
        {
            CommitBlock();
            if (_raw is not null)
            {
                _raw.FlushAll();
                return;
            }

            if (_vhd!.IsDynamic)
            {
                _vhd.WriteFooters();
            }
            else
            {
                _vhd.Flush();
            }
        }

        public void Dispose()
        {
            _raw?.Dispose();
            _vhd?.Dispose();
        }
    }
}
