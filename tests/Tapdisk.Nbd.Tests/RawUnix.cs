using System.Net.Sockets;

namespace Tapdisk.Nbd.Tests;

/// <summary>Raw UNIX stream sockets for tests that play badly behaved clients.</summary>
internal static class RawUnix
{
    /// <summary>Hang guard only: generous, and never the thing a test asserts on.</summary>
    public static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    public static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads until the server closes the connection; returns the bytes that came first. A reset counts as a close: a
    /// UNIX socket closed with unread input resets its peer.
    /// </summary>
    public static async Task<int> ReadUntilClosedAsync(Socket socket)
    {
        using var guard = new CancellationTokenSource(HangGuard);
        byte[] buffer = new byte[4096];
        int total = 0;
        while (true)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, guard.Token);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                return total;
            }

            if (n == 0)
            {
                return total;
            }

            total += n;
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes; fails on EOF.</summary>
    public static async Task<byte[]> ReadExactAsync(Socket socket, int count)
    {
        using var guard = new CancellationTokenSource(HangGuard);
        byte[] buffer = new byte[count];
        int got = 0;
        while (got < count)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, guard.Token);
            Assert.True(n > 0, $"EOF after {got} of {count} bytes");
            got += n;
        }

        return buffer;
    }

    /// <summary>Waits until <paramref name="condition"/> holds (polling), failing only at the hang guard.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var guard = new CancellationTokenSource(HangGuard);
        while (!condition())
        {
            if (guard.IsCancellationRequested)
            {
                Assert.Fail($"still waiting for {what} after {HangGuard}");
            }

            await Task.Delay(20, CancellationToken.None);
        }
    }

    /// <summary>Clients reported as dropped for a handshake past its deadline, summed over the aggregated lines.</summary>
    public static int HandshakeTimeoutsLogged(ListLogger logger) =>
        logger.Entries.Where(e => e.EventId == 9).Sum(e => (int)e.Fields["Count"]!);
}
