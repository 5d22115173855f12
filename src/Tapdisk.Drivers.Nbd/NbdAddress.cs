using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Drivers.Nbd;

/// <summary>
/// Where an "nbd:" image lives, in blktap's order (control-xen.md 7.2): an existing UNIX socket path, else
/// host:port over TCP ("[v6]:port" too). blktap's third form, the id of a socket passed to nbdclient&lt;pid&gt;, is
/// not supported by this build and is refused by name.
/// </summary>
public sealed record NbdAddress(string Text, string? UnixPath, string? Host, int Port)
{
    private const int MaxHostLength = 255;

    public bool IsUnix => UnixPath is not null;

    public static NbdAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 0 && File.Exists(text))
        {
            return new NbdAddress(text, text, null, 0);
        }

        int colon = text.LastIndexOf(':');
        if (colon > 0 && colon < text.Length - 1)
        {
            string host = text[..colon];
            if (host.StartsWith('[') && host.EndsWith(']'))
            {
                host = host[1..^1];
            }

            if (host.Length is > 0 and <= MaxHostLength
                && int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port)
                && port is > 0 and <= 65535)
            {
                return new NbdAddress(text, null, host, port);
            }
        }

        throw new ImageOpenException(text, Errno.ENOENT, "not an existing UNIX socket and not host:port (sockets passed to nbdclient<pid> by id are not supported by this build)");
    }

    public EndPoint ResolveEndPoint()
    {
        if (UnixPath is not null)
        {
            return new UnixDomainSocketEndPoint(UnixPath);
        }

        if (IPAddress.TryParse(Host, out IPAddress? ip))
        {
            return new IPEndPoint(ip, Port);
        }

        try
        {
            IPAddress[] addresses = Dns.GetHostAddresses(Host!);
            return addresses.Length > 0
                ? new IPEndPoint(addresses[0], Port)
                : throw new ImageOpenException(Text, Errno.ENOENT, $"host '{Host}' has no address");
        }
        catch (SocketException e)
        {
            throw new ImageOpenException(Text, Errno.ENOENT, $"cannot resolve host '{Host}': {e.Message}");
        }
    }
}
