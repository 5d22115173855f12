using System.Net.Sockets;

namespace Tapdisk;

/// <summary>
/// The send buffer both NBD ends ask for: 1 MiB (the kernel doubles it, within net.core.wmem_max). The default 208 KiB
/// holds less than one 256 KiB read reply, so every large reply blocked in send while the client drained it (nbdcopy's
/// server CPU per copy fell by about a tenth with the larger buffer); on the client it holds a queue depth's worth of
/// small writes, so a send rarely leaves work for its writer. One source file compiled into each NBD project.
/// </summary>
internal static class SocketSendBuffer
{
    public const int Bytes = 1024 * 1024;

    /// <summary>Asks for <see cref="Bytes"/>; only a hint: a socket that refuses keeps the default.</summary>
    public static void TrySet(Socket socket)
    {
        try
        {
            socket.SendBufferSize = Bytes;
        }
        catch (SocketException)
        {
            // The default buffer works, with more sends waiting for room.
        }
    }
}
