using System.Text;
using Tapdisk.Abi;
using Tapdisk.Control;
using Tapdisk.Filters.Mirror;
using Tapdisk.Filters.Cache;
using Tapdisk.Storage;

namespace Tapdisk.Daemon;

internal sealed partial class TapdiskHost
{
    /// <summary>LIST: N entries counting down, then a count-0 terminator with minor -1 (control-xen.md 2.6).</summary>
    private byte[] ListReply(ushort cookie)
    {
        List<(int Minor, int State, string? Path)> rows;
        lock (_lock)
        {
            rows = _vbds.ConvertAll(v => (v.Minor, (int)v.State, v.Params));
        }

        byte[] reply = new byte[TapdiskMessage.Size * (rows.Count + 1)];
        int lastState = 0;
        for (int i = 0; i < rows.Count; i++)
        {
            var m = new TapdiskMessage(TapdiskMessageType.ListResponse, cookie)
            {
                ListCount = rows.Count - i,
                ListMinor = rows[i].Minor,
                ListState = rows[i].State,
                ListPath = Truncate(rows[i].Path ?? string.Empty, TapdiskMessage.PathLength - 1),
            };
            m.Bytes.CopyTo(reply.AsSpan(i * TapdiskMessage.Size));
            lastState = rows[i].State;
        }

        var end = new TapdiskMessage(TapdiskMessageType.ListResponse, cookie) { ListCount = 0, ListMinor = -1, ListState = lastState, ListPath = string.Empty };
        end.Bytes.CopyTo(reply.AsSpan(rows.Count * TapdiskMessage.Size));
        return reply;
    }

    /// <summary>STATS: the header with info.length, then the JSON; cookie 0xFFFF gives an array of every VBD (which crashes the reference).</summary>
    private byte[] StatsReply(ushort cookie)
    {
        string json;
        lock (_lock)
        {
            if (cookie == TapdiskMessage.AllMinors)
            {
                var all = new StatsJson();
                all.BeginArray();
                foreach (Vbd v in _vbds)
                {
                    WriteVbdStats(all, v);
                }

                all.EndArray();
                json = all.ToString();
            }
            else
            {
                Vbd? vbd = _vbds.Find(v => v.Minor == cookie);
                if (vbd is null)
                {
                    return TapdiskMessage.ErrorReply(cookie, Errno.ENODEV).Bytes.ToArray();
                }

                var one = new StatsJson();
                WriteVbdStats(one, vbd);
                json = one.ToString();
            }
        }

        byte[] text = Encoding.UTF8.GetBytes(json);
        byte[] reply = new byte[TapdiskMessage.Size + text.Length];
        new TapdiskMessage(TapdiskMessageType.StatsResponse, cookie) { InfoLength = (ulong)text.Length }.Bytes.CopyTo(reply);
        text.CopyTo(reply, TapdiskMessage.Size);
        return reply;
    }

    private static void WriteVbdStats(StatsJson json, Vbd vbd)
    {
        // The backend's counters live from OPEN to CLOSE: they survive pause and resume, as blktap's do.
        BlockBackend? backend = vbd.Backend;
        long readSectors = backend?.ReadSectors ?? 0;
        long writeSectors = backend?.WriteSectors ?? 0;
        int inFlight = backend?.InFlight ?? 0;
        json.BeginObject();
        json.String("name", vbd.Params ?? "(null)");
        json.Pair("secs", readSectors, writeSectors);
        json.BeginArray("images");

        // Filters above the leaf are listed first (blktap's log, type 9) with their counters at zero: blktap counts
        // the requests they forward on the leaf. An image's read hits are what it served itself (a read passed to the
        // parent counts on the parent, as blktap counts them); writes and failures all land on the leaf. The secondary
        // logic is no layer of blktap's: its image follows the leaf, as blktap inserts it (data-plane.md 2.7), with the
        // writes it took and failed.
        bool belowLeaf = false;
        MirrorFilter? mirror = null;
        for (IBlockImage? layer = vbd.ChainOpen ? backend?.Image : null; layer is not null; layer = layer.Parent)
        {
            if (layer is MirrorFilter m)
            {
                mirror = m;
                continue;
            }

            bool counts = !belowLeaf && layer.Kind == LayerKind.Image;
            long readHits = layer.Counters is { } own ? own.ReadSectors : (counts ? readSectors : 0);
            WriteImage(json, layer, readHits, counts ? writeSectors : 0, counts ? backend!.ReadFailedSectors : 0, counts ? backend!.WriteFailedSectors : 0, counts ? inFlight : 0);
            if (!belowLeaf && layer.Kind == LayerKind.Image && mirror?.ListedSecondary is { } secondary)
            {
                WriteImage(json, secondary, 0, mirror.SecondaryWriteSectors, 0, mirror.SecondaryFailedSectors, 0);
            }

            belowLeaf |= layer.Kind == LayerKind.Image;
        }

        json.EndArray();
        WriteRingStats(json, vbd);
        json.Number("FIXME_enospc_redirect_count", vbd.SecondaryState?.RedirectedSectors ?? 0);
        json.Number("nbd_mirror_failed", vbd.SecondaryState?.MirrorFailed ?? 0);
        json.Number("reqs_outstanding", inFlight);
        json.String("read_caching", (vbd.Flags & TapdiskOpenFlags.NoODirect) != 0 ? "true" : "false");
        WriteCacheStats(json, vbd.ChainOpen ? backend?.Image : null);
        json.EndObject();
    }

    private static void WriteImage(StatsJson json, IBlockImage layer, long readHits, long writeHits, long readFailed, long writeFailed, int pending)
    {
        json.BeginObject();
        json.String("name", layer.Path);
        json.Pair("hits", readHits, writeHits);
        json.Pair("fail", readFailed, writeFailed);
        json.BeginObject("driver");
        json.Number("type", DiskTypes.Id(layer.DriverName));
        json.String("name", layer.DriverName);
        if (layer.DriverName == "aio")
        {
            json.BeginObject("status").BeginObject("reqs").Number("max", 352).Number("pending", pending).EndObject().EndObject();
        }
        else
        {
            json.Null("status");
        }

        json.EndObject();
        json.EndObject();
    }

    /// <summary>
    /// Our extra keys, after blktap's (which keep their order): lc's state, then the shared parent cache as this VBD uses it. "hits" and
    /// "misses" are this VBD's granule lookups, "bytes_saved" the bytes it read from memory instead of the parent's
    /// files; the set's entries and bytes are shared by every VBD over the same parent ("users"); "compression_ratio"
    /// is stored bytes (overhead included) over raw bytes, in thousandths, for the whole process's cache.
    /// </summary>
    private static void WriteCacheStats(StatsJson json, IBlockImage? top)
    {
        for (IBlockImage? layer = top; layer is not null; layer = layer.Parent)
        {
            if (layer is LocalCacheFilter lc)
            {
                // Our extra key for lc (blktap's lc has no status): whether write-back runs, and what it did.
                json.BeginObject("local_cache");
                json.String("write_back", lc.StoppedOnEnospc ? "stopped (ENOSPC)" : lc.SpaceLow ? "paused (low space)" : "on");
                json.Number("written_back_bytes", lc.WrittenBackBytes);
                json.Number("write_backs", lc.WriteBacks);
                json.Number("abandoned", lc.Abandoned);
                json.EndObject();
                continue;
            }

            if (layer is not BlockCacheFilter bc)
            {
                continue;
            }

            ParentCacheSet set = bc.Set;
            ParentCache cache = set.Cache;
            json.BeginObject("parent_cache");
            json.Number("hits", bc.Hits);
            json.Number("misses", bc.Misses);
            json.Number("hot_hits", bc.HotHits);
            json.Number("bytes_saved", bc.HitBytes);
            json.Number("users", set.References);
            json.Number("entries", set.EntryCount);
            json.Number("raw_bytes", set.RawBytes);
            json.Number("stored_bytes", set.StoredBytes);
            json.Number("set_hits", set.Hits);
            json.Number("set_misses", set.Misses);
            json.Number("cache_entries", cache.Entries);
            json.Number("cache_stored_bytes", cache.StoredBytes);
            json.Number("cache_hot_bytes", cache.HotBytes);
            json.Number("cache_budget_bytes", cache.BudgetBytes);
            json.Number("compression_ratio_permille", cache.RawBytes == 0 ? 0 : (cache.StoredBytes - cache.HotBytes) * 1000 / cache.RawBytes);
            json.Number("evictions", cache.Evictions);
            json.EndObject();
            return;
        }
    }

    private static string Truncate(string text, int maxBytes)
    {
        while (Encoding.UTF8.GetByteCount(text) > maxBytes)
        {
            text = text[..^1];
        }

        return text;
    }
}
