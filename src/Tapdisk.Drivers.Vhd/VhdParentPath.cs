using System.Text;

namespace Tapdisk.Drivers.Vhd;

/// <summary>Parent locator payload encoding and resolution, as blktap does it (data-plane.md 1.8).</summary>
public static class VhdParentPath
{
    /// <summary>Decodes one locator's payload to a path, or null if the code is skipped or the bytes don't decode.</summary>
    public static string? Decode(uint platformCode, ReadOnlySpan<byte> payload)
    {
        string text;
        switch (platformCode)
        {
            case VhdParentLocator.MacX:
                if (payload.ContainsAnyInRange((byte)0x80, (byte)0xFF))
                {
                    return null;
                }

                text = Encoding.ASCII.GetString(payload).TrimEnd('\0');
                if (!text.StartsWith("file://", StringComparison.Ordinal))
                {
                    return null;
                }

                text = text["file://".Length..];
                break;
            case VhdParentLocator.W2ku:
            case VhdParentLocator.W2ru:
                if (payload.Length % 2 != 0)
                {
                    payload = payload[..^1];
                }

                text = Encoding.Unicode.GetString(payload).TrimEnd('\0');
                foreach (char c in text)
                {
                    if (c > 0x7F)
                    {
                        return null;
                    }
                }

                text = text.Replace('\\', '/');
                if (text.StartsWith("C:", StringComparison.Ordinal) || text.StartsWith("c:", StringComparison.Ordinal))
                {
                    text = text[2..];
                }

                break;
            default:
                return null;
        }

        return text.Length == 0 ? null : text;
    }

    /// <summary>vhd_find_parent: an absolute readable name as is, else relative to the child's canonical directory.</summary>
    public static string? Find(string childCanonicalPath, string name)
    {
        if (name.StartsWith('/') && File.Exists(name))
        {
            return name;
        }

        string dir = Path.GetDirectoryName(childCanonicalPath) ?? "/";
        string candidate = dir + "/" + name;
        return File.Exists(candidate) ? Path.GetFullPath(candidate) : null;
    }

    /// <summary>The relative path from the child's canonical path to the parent's ("./p.vhd", "../p.vhd").</summary>
    public static string Relative(string childCanonicalPath, string parentCanonicalPath)
    {
        string[] child = childCanonicalPath.Split('/', StringSplitOptions.RemoveEmptyEntries);
        string[] parent = parentCanonicalPath.Split('/', StringSplitOptions.RemoveEmptyEntries);
        int common = 0;
        while (common < child.Length - 1 && common < parent.Length - 1 && child[common] == parent[common])
        {
            common++;
        }

        var sb = new StringBuilder();
        int ups = child.Length - 1 - common;
        if (ups == 0)
        {
            sb.Append("./");
        }

        for (int i = 0; i < ups; i++)
        {
            sb.Append("../");
        }

        sb.Append(string.Join('/', parent[common..]));
        return sb.ToString();
    }

    /// <summary>MacX payload: "file://" + path, UTF-8 (ASCII), no NUL.</summary>
    public static byte[] EncodeMacX(string relativePath) => Encoding.UTF8.GetBytes("file://" + relativePath);

    /// <summary>W2ku/W2ru payload: one leading "./" dropped and ".\" prefixed, '/' to '\', UTF-16LE without BOM or NUL.</summary>
    public static byte[] EncodeWindows(string relativePath)
    {
        string p = relativePath;
        if (!p.StartsWith('/'))
        {
            if (p.StartsWith("./", StringComparison.Ordinal))
            {
                p = p[2..];
            }

            p = "./" + p;
        }

        return Encoding.Unicode.GetBytes(p.Replace('/', '\\'));
    }
}
