using System.Globalization;
using System.Text;

namespace Tapdisk.XenStore;

public sealed partial class XenStoreClient
{
    /// <summary>XS_READ; null if the node does not exist (ENOENT).</summary>
    public async Task<string?> TryReadAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        try
        {
            return await ReadAsync(path, transaction, cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException e) when (e.Errno == XenStoreErrors.ENOENT)
        {
            return null;
        }
    }

    /// <summary>XS_READ: the value, which the wire carries without a trailing NUL.</summary>
    public async Task<string> ReadAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        byte[] value = await RequestAsync(XenStoreMessageType.Read, transaction, XenStoreConnection.EncodeStrings(path), path, cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(value);
    }

    /// <summary>XS_WRITE: "path\0value", the value not NUL-terminated; missing parents are created by xenstored.</summary>
    public async Task WriteAsync(string path, string value, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        int pathBytes = Encoding.UTF8.GetByteCount(path);
        byte[] payload = new byte[pathBytes + 1 + Encoding.UTF8.GetByteCount(value)];
        Encoding.UTF8.GetBytes(path, payload);
        Encoding.UTF8.GetBytes(value, payload.AsSpan(pathBytes + 1));
        await RequestAsync(XenStoreMessageType.Write, transaction, payload, path, cancellationToken).ConfigureAwait(false);
    }

    public async Task MkdirAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default) =>
        await RequestAsync(XenStoreMessageType.Mkdir, transaction, XenStoreConnection.EncodeStrings(path), path, cancellationToken).ConfigureAwait(false);

    /// <summary>XS_RM of a node and everything below it; an absent node is fine, an absent parent is ENOENT.</summary>
    public async Task RemoveAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default) =>
        await RequestAsync(XenStoreMessageType.Remove, transaction, XenStoreConnection.EncodeStrings(path), path, cancellationToken).ConfigureAwait(false);

    /// <summary>XS_DIRECTORY: child names; null if the node does not exist.</summary>
    public async Task<IReadOnlyList<string>?> TryDirectoryAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        try
        {
            return await DirectoryAsync(path, transaction, cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException e) when (e.Errno == XenStoreErrors.ENOENT)
        {
            return null;
        }
    }

    public async Task<IReadOnlyList<string>> DirectoryAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        byte[] names = await RequestAsync(XenStoreMessageType.Directory, transaction, XenStoreConnection.EncodeStrings(path), path, cancellationToken).ConfigureAwait(false);
        return SplitStrings(names);
    }

    public async Task<IReadOnlyList<XenStorePermission>> GetPermissionsAsync(string path, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        byte[] reply = await RequestAsync(XenStoreMessageType.GetPermissions, transaction, XenStoreConnection.EncodeStrings(path), path, cancellationToken).ConfigureAwait(false);
        var permissions = new List<XenStorePermission>();
        foreach (string text in SplitStrings(reply))
        {
            if (!XenStorePermission.TryParse(text, out XenStorePermission permission))
            {
                throw new XenStoreException("EIO", $"xenstore GET_PERMS {path}: unparsable permission '{text}'");
            }

            permissions.Add(permission);
        }

        return permissions;
    }

    /// <summary>XS_SET_PERMS: the first entry is the owner and everyone's default, later entries grant domains.</summary>
    public async Task SetPermissionsAsync(string path, IReadOnlyList<XenStorePermission> permissions, XenStoreTransaction transaction = default, CancellationToken cancellationToken = default)
    {
        if (permissions.Count == 0)
        {
            throw new ArgumentException("a permission list names at least the owner", nameof(permissions));
        }

        string[] parts = new string[permissions.Count + 1];
        parts[0] = path;
        for (int i = 0; i < permissions.Count; i++)
        {
            parts[i + 1] = permissions[i].ToString();
        }

        await RequestAsync(XenStoreMessageType.SetPermissions, transaction, XenStoreConnection.EncodeStrings(parts), path, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>XS_WATCH; the watch fires once at once, and is registered again after every reconnect.</summary>
    public async Task WatchAsync(string path, string token, CancellationToken cancellationToken = default)
    {
        await RequestAsync(XenStoreMessageType.Watch, default, XenStoreConnection.EncodeStrings(path, token), path, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            if (!_watches.Contains((path, token)))
            {
                _watches.Add((path, token));
            }
        }
    }

    /// <summary>XS_UNWATCH; the watch is forgotten even if xenstored no longer knew it (ENOENT).</summary>
    public async Task UnwatchAsync(string path, string token, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _watches.Remove((path, token));
        }

        try
        {
            await RequestAsync(XenStoreMessageType.Unwatch, default, XenStoreConnection.EncodeStrings(path, token), path, cancellationToken).ConfigureAwait(false);
        }
        catch (XenStoreException e) when (e.Errno == XenStoreErrors.ENOENT)
        {
            // Already gone on the server side (e.g. after a reconnect that raced with this call).
        }
    }

    public async Task<string> GetDomainPathAsync(uint domainId, CancellationToken cancellationToken = default)
    {
        string id = domainId.ToString(CultureInfo.InvariantCulture);
        byte[] reply = await RequestAsync(XenStoreMessageType.GetDomainPath, default, XenStoreConnection.EncodeStrings(id), id, cancellationToken).ConfigureAwait(false);
        return TrimNul(reply);
    }

    /// <summary>XS_IS_DOMAIN_INTRODUCED: false once a domain is gone (what @releaseDomain watchers check).</summary>
    public async Task<bool> IsDomainIntroducedAsync(uint domainId, CancellationToken cancellationToken = default)
    {
        string id = domainId.ToString(CultureInfo.InvariantCulture);
        byte[] reply = await RequestAsync(XenStoreMessageType.IsDomainIntroduced, default, XenStoreConnection.EncodeStrings(id), id, cancellationToken).ConfigureAwait(false);
        return TrimNul(reply) == "T";
    }

    private async Task<byte[]> RequestAsync(XenStoreMessageType type, XenStoreTransaction transaction, byte[] payload, string subject, CancellationToken cancellationToken)
    {
        XenStoreConnection connection = _connection ?? throw new XenStoreConnectionLostException();
        XenStoreReply reply = await connection.RequestAsync(type, transaction.Id, payload, cancellationToken).ConfigureAwait(false);
        if (reply.Type == XenStoreMessageType.Error)
        {
            string name = TrimNul(reply.Payload);
            throw new XenStoreException(name, $"xenstore {type} {subject}: {name}");
        }

        if (reply.Type != type)
        {
            throw new XenStoreException("EIO", $"xenstore {type} {subject}: reply of type {reply.Type}");
        }

        return reply.Payload;
    }

    private static string TrimNul(byte[] payload)
    {
        ReadOnlySpan<byte> span = payload;
        int nul = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? span : span[..nul]);
    }

    private static List<string> SplitStrings(byte[] payload)
    {
        var parts = new List<string>();
        ReadOnlySpan<byte> rest = payload;
        while (!rest.IsEmpty)
        {
            int nul = rest.IndexOf((byte)0);
            if (nul < 0)
            {
                parts.Add(Encoding.UTF8.GetString(rest));
                break;
            }

            parts.Add(Encoding.UTF8.GetString(rest[..nul]));
            rest = rest[(nul + 1)..];
        }

        return parts;
    }
}
