namespace Tapdisk.Tapback;

/// <summary>
/// <c>physical-device-path</c> as the block-tap script writes it for vbd3: <c>&lt;root&gt;/nbd&lt;pid&gt;.&lt;minor&gt;</c>,
/// the tapdisk's NBD socket for that minor (control-xen.md Part I 8.2, Part II 5.7).
/// </summary>
internal static class PhysicalDevicePath
{
    public static bool TryParse(string? path, out int pid, out int minor)
    {
        pid = 0;
        minor = 0;
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }

        string name = Path.GetFileName(path);
        if (!name.StartsWith("nbd", StringComparison.Ordinal))
        {
            return false;
        }

        int dot = name.IndexOf('.', StringComparison.Ordinal);
        return dot > 3
            && StrictNumber.TryParseInt32(name[3..dot], out pid) && pid > 0
            && StrictNumber.TryParseInt32(name[(dot + 1)..], out minor);
    }
}
