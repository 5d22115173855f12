using System.Net.Sockets;
using Xunit;

namespace Tapdisk.Abi.Tests;

/// <summary>sendmsg of a header and a payload over a real UNIX socket pair.</summary>
public sealed class GatherSendTests
{
    [Fact]
    public void HeaderAndData_ArriveInOrder_InOneSend()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            byte[] header = [1, 2, 3, 4, 5];
            byte[] data = [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))];
            nint n = GatherSend.Send(a.SafeHandle, header, data, out int errno);
            Assert.Equal(0, errno);
            Assert.Equal(header.Length + data.Length, n);

            byte[] received = ReceiveExactly(b, header.Length + data.Length);
            Assert.Equal([.. header, .. data], received);
        }
    }

    [Fact]
    public async Task PayloadLargerThanTheSocketBuffer_IsSentInParts_AndResumesWhereItStopped()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            // With nobody reading, the send timeout cuts the first send short once the buffer is full.
            a.SendBufferSize = 4096;
            a.SendTimeout = 100;
            byte[] header = [9, 8, 7];
            byte[] data = [.. Enumerable.Range(0, 1 << 20).Select(i => (byte)(i ^ (i >> 8)))];
            nint first = GatherSend.Send(a.SafeHandle, header, data, out int errno);
            Assert.True(first > 0 && first < header.Length + data.Length, $"first send: {first} (errno {errno})");

            a.SendTimeout = 0;
            Task<byte[]> reader = Task.Run(() => ReceiveExactly(b, header.Length + data.Length));
            int fromHeader = (int)Math.Min(first, header.Length);
            SendAll(a, header.AsSpan(fromHeader), data.AsSpan((int)(first - fromHeader)));
            byte[] received = await reader.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal([.. header, .. data], received);
        }
    }

    /// <summary>Sends both buffers whole, resuming after partial sends as a caller must.</summary>
    private static void SendAll(Socket socket, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second)
    {
        while (first.Length + second.Length > 0)
        {
            nint n = GatherSend.Send(socket.SafeHandle, first, second, out int errno);
            Assert.True(n > 0, $"sendmsg failed with errno {errno}");
            int fromFirst = (int)Math.Min(n, first.Length);
            first = first[fromFirst..];
            second = second[(int)(n - fromFirst)..];
        }
    }

    [Fact]
    public void FullBufferAndNoReader_EndsWithEagain_AfterTheSendTimeout()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        using (b)
        {
            a.SendTimeout = 100;
            byte[] data = new byte[256 * 1024];
            int errno = 0;
            for (int i = 0; i < 1000 && errno == 0; i++)
            {
                GatherSend.Send(a.SafeHandle, [], data, out errno);
            }

            Assert.Equal(Errno.EAGAIN, errno);
        }
    }

    [Fact]
    public void ClosedPeer_GivesEpipe_NotASignal()
    {
        (Socket a, Socket b) = Pair();
        using (a)
        {
            b.Dispose();
            nint n = GatherSend.Send(a.SafeHandle, [1], [2], out int errno);
            Assert.Equal(-1, n);
            Assert.Equal(Errno.EPIPE, errno);
        }
    }

    private static (Socket, Socket) Pair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"gather-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        File.Delete(path);
        return (client, server);
    }

    private static byte[] ReceiveExactly(Socket socket, int length)
    {
        byte[] buffer = new byte[length];
        int total = 0;
        while (total < length)
        {
            int n = socket.Receive(buffer, total, length - total, SocketFlags.None);
            Assert.True(n > 0, "the peer closed early");
            total += n;
        }

        return buffer;
    }
}
