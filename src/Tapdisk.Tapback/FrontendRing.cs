using Tapdisk.XenStore;

namespace Tapdisk.Tapback;

/// <summary>What the frontend published for its ring, read once and validated before anything is sent to tapdisk.</summary>
internal sealed record FrontendRing(uint[] RingRefs, uint Order, uint EventChannel, BlkifProtocol Protocol, string? ProtocolName)
{
    /// <summary>The 8 grefs XENBLKIF_CONNECT can carry; tapdisk maps at most 2^3 ring pages.</summary>
    public const uint MaxOrder = 3;

    /// <summary>
    /// Reads ring-page-order (or the older num-ring-pages), ring-ref / ring-refN, event-channel and protocol from the
    /// frontend directory. Everything is checked: the reference copies an unchecked number of ring-refs into an
    /// 8-entry array (control-xen.md Part II 5.6 item 1). Returns null and a reason for the log when a key is missing
    /// or garbled.
    /// </summary>
    public static async Task<(FrontendRing? Ring, string? Fault)> ReadAsync(XenStoreClient xenStore, string frontendPath, uint maxOrder, CancellationToken cancellationToken)
    {
        uint order = 0;
        string? orderText = await xenStore.TryReadAsync(frontendPath + "/ring-page-order", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (orderText is not null)
        {
            if (!StrictNumber.TryParseUInt32(orderText, out order))
            {
                return (null, $"unparsable ring-page-order '{Clip(orderText)}'");
            }
        }
        else if (await xenStore.TryReadAsync(frontendPath + "/num-ring-pages", cancellationToken: cancellationToken).ConfigureAwait(false) is { } pagesText)
        {
            if (!StrictNumber.TryParseUInt32(pagesText, out uint pages) || pages == 0 || (pages & (pages - 1)) != 0)
            {
                return (null, $"num-ring-pages '{Clip(pagesText)}' is not a power of two");
            }

            order = (uint)System.Numerics.BitOperations.Log2(pages);
        }

        if (order > maxOrder)
        {
            return (null, $"ring-page-order {order} exceeds the advertised maximum {maxOrder}");
        }

        uint[] refs = new uint[1u << (int)order];
        for (int i = 0; i < refs.Length; i++)
        {
            string key = order == 0 ? "ring-ref" : "ring-ref" + StrictNumber.Format((ulong)i);
            string? text = await xenStore.TryReadAsync(frontendPath + "/" + key, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (text is null)
            {
                return (null, $"missing {key}");
            }

            if (!StrictNumber.TryParseUInt32(text, out refs[i]))
            {
                return (null, $"unparsable {key} '{Clip(text)}'");
            }
        }

        string? portText = await xenStore.TryReadAsync(frontendPath + "/event-channel", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (portText is null)
        {
            return (null, "missing event-channel");
        }

        if (!StrictNumber.TryParseUInt32(portText, out uint port) || port == 0)
        {
            return (null, $"bad event-channel '{Clip(portText)}'");
        }

        string? protocolText = await xenStore.TryReadAsync(frontendPath + "/protocol", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!BlkifProtocols.TryMap(protocolText, out BlkifProtocol protocol))
        {
            return (null, $"unknown protocol '{Clip(protocolText ?? string.Empty)}'");
        }

        // feature-persistent is not read: we map no persistent grants, and unlike the reference an odd value there
        // must not block the connect (control-xen.md Part II 5.6 item 4).
        return (new FrontendRing(refs, order, port, protocol, protocolText), null);
    }

    /// <summary>Keeps log lines short when a hostile frontend writes kilobytes into a key.</summary>
    private static string Clip(string text) => text.Length <= 32 ? text : text[..32] + "...";
}
