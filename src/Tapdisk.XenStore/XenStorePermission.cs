using System.Globalization;

namespace Tapdisk.XenStore;

/// <summary>Access granted by one permission entry: the letters n, r, w, b of the wire form.</summary>
[Flags]
public enum XenStoreAccess
{
    None = 0,
    Read = 1,
    Write = 2,
    Both = Read | Write,
}

/// <summary>
/// One entry of a node's permission list, "&lt;letter&gt;&lt;domid&gt;". The first entry of a list names the owner and
/// the default access of every other domain; later entries grant specific domains.
/// </summary>
public readonly record struct XenStorePermission(XenStoreAccess Access, uint DomainId)
{
    public static XenStorePermission Parse(string text)
    {
        if (!TryParse(text, out XenStorePermission permission))
        {
            throw new FormatException($"not a xenstore permission: '{text}'");
        }

        return permission;
    }

    public static bool TryParse(string text, out XenStorePermission permission)
    {
        permission = default;
        if (text.Length < 2)
        {
            return false;
        }

        XenStoreAccess? access = text[0] switch
        {
            'n' => XenStoreAccess.None,
            'r' => XenStoreAccess.Read,
            'w' => XenStoreAccess.Write,
            'b' => XenStoreAccess.Both,
            _ => null,
        };
        if (access is null || !uint.TryParse(text.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out uint domid))
        {
            return false;
        }

        permission = new XenStorePermission(access.Value, domid);
        return true;
    }

    public override string ToString()
    {
        char letter = Access switch
        {
            XenStoreAccess.Read => 'r',
            XenStoreAccess.Write => 'w',
            XenStoreAccess.Both => 'b',
            _ => 'n',
        };
        return string.Create(CultureInfo.InvariantCulture, $"{letter}{DomainId}");
    }
}
