using System.Net.Sockets;

namespace Tapdisk.Testing;

/// <summary>
/// Many non-blocking UNIX connects at once, as a burst of clients makes them: a listen backlog too small shows as
/// connects that fail at once (EAGAIN) instead of waiting.
/// </summary>
public static class UnixConnectBurst
{
    /// <summary>Connects <paramref name="count"/> sockets to <paramref name="path"/>; the caller disposes every one.</summary>
    public static (List<Socket> Clients, List<SocketError> Failures) Connect(string path, int count)
    {
        var clients = new List<Socket>(count);
        var failures = new List<SocketError>();
        var endpoint = new UnixDomainSocketEndPoint(path);
        for (int i = 0; i < count; i++)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
            clients.Add(socket);
            try
            {
                socket.Connect(endpoint);
            }
            catch (SocketException e)
            {
                failures.Add(e.SocketErrorCode);
            }
        }

        return (clients, failures);
    }
}
