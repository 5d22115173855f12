using System.Net.Sockets;
using Xunit;

namespace Tapdisk.Testing;

/// <summary>A connected pair of UNIX stream sockets, as a server and its client hold them, and exact reads from one.</summary>
public static class UnixSocketPair
{
    /// <summary>The accepted end first, then the connecting end.</summary>
    public static (Socket Accepted, Socket Connected) Create()
    {
        string path = Path.Combine(Path.GetTempPath(), $"pair-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        File.Delete(path);
        return (server, client);
    }

    /// <summary>Receives exactly <paramref name="length"/> bytes; fails the test if the peer closes first.</summary>
    public static byte[] ReceiveExactly(Socket socket, int length)
    {
        byte[] buffer = new byte[length];
        ReceiveExactly(socket, buffer);
        return buffer;
    }

    /// <summary>Fills <paramref name="destination"/>; fails the test if the peer closes first.</summary>
    public static void ReceiveExactly(Socket socket, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(socket);
        while (!destination.IsEmpty)
        {
            int n = socket.Receive(destination);
            Assert.True(n > 0, "the peer closed early");
            destination = destination[n..];
        }
    }
}
