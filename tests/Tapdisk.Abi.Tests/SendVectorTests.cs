using System.Buffers;
using System.Net.Sockets;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Abi.Tests;

/// <summary>sendmsg of many listed buffers over a real UNIX socket pair.</summary>
public sealed class SendVectorTests
{
    [Fact]
    public void ManyBuffers_ArriveInOrder_InOneSend()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        using (var vector = new SendVector(64))
        using (var native = new AlignedMemory(4096))
        {
            Pattern(native.GetSpan(), 7);
            byte[] expected = [];
            for (int i = 0; i < 20; i++)
            {
                // Headers from managed arrays, payloads from native memory, as replies are built.
                byte[] header = [(byte)i, 1, 2, 3];
                ReadOnlyMemory<byte> data = native.Memory[(i * 100)..((i * 100) + 200)];
                vector.Add(header);
                vector.Add(data);
                expected = [.. expected, .. header, .. data.Span];
            }

            vector.Add(ReadOnlyMemory<byte>.Empty);
            Assert.Equal(expected.Length, vector.PendingBytes);
            nint n = vector.SendOnce(a.SafeHandle, out int errno);
            Assert.Equal(0, errno);
            Assert.Equal(expected.Length, n);
            Assert.Equal(0, vector.PendingBytes);
            Assert.Equal(expected, UnixSocketPair.ReceiveExactly(b, expected.Length));
        }
    }

    [Fact]
    public void HeaderAndPayload_PayloadCannotBePinned_NeitherIsListed_AndNothingIsHeldWithoutWaiting()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        using (var vector = new SendVector(4))
        using (var unpinnable = new UnpinnableMemory(16))
        {
            byte[] header = [1, 2, 3, 4];
            Assert.Throws<NotSupportedException>(() => vector.Add(header, unpinnable.Memory));
            Assert.Equal(0, vector.PendingBytes);
            Assert.Throws<NotSupportedException>(() => vector.Add(unpinnable.Memory, header));
            Assert.Equal(0, vector.PendingBytes);

            // A socket with no room: a send that must not wait says so at once.
            a.SendBufferSize = 4096;
            byte[] payload = new byte[256 * 1024];
            vector.Add(header, payload);
            Assert.Equal(header.Length + payload.Length, vector.PendingBytes);
            nint n = vector.SendOnce(a.SafeHandle, out int errno, dontWait: true);
            Assert.True(n > 0, $"errno {errno}");
            Assert.True(vector.PendingBytes > 0, "the socket took it all: the case is not exercised");
            Assert.Equal(-1, vector.SendOnce(a.SafeHandle, out errno, dontWait: true));
            Assert.Equal(Errno.EAGAIN, errno);
            vector.Clear();
        }
    }

    private sealed class UnpinnableMemory(int length) : MemoryManager<byte>
    {
        private readonly byte[] _data = new byte[length];

        public override Span<byte> GetSpan() => _data;

        public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException("not pinnable");

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }

    [Fact]
    public async Task MoreThanTheSocketBuffer_IsSentInParts_AndResumesInsideTheBufferCutShort()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        using (var vector = new SendVector(8))
        {
            // With nobody reading, the send timeout cuts the first send short once the socket buffer is full.
            a.SendBufferSize = 4096;
            a.SendTimeout = 100;
            byte[] header = [9, 8, 7];
            byte[] data = new byte[1 << 20];
            Pattern(data, 3);
            byte[] tail = [1, 2, 3, 4, 5];
            vector.Add(header);
            vector.Add(data);
            vector.Add(tail);
            long total = vector.PendingBytes;
            nint first = vector.SendOnce(a.SafeHandle, out int errno);
            Assert.True(first > header.Length && first < total, $"first send: {first} (errno {errno})");
            Assert.Equal(total - first, vector.PendingBytes);

            a.SendTimeout = 0;
            Task<byte[]> reader = Task.Run(() => UnixSocketPair.ReceiveExactly(b, (int)total));
            while (vector.PendingBytes > 0)
            {
                nint n = vector.SendOnce(a.SafeHandle, out errno);
                Assert.True(n > 0, $"sendmsg failed with errno {errno}");
            }

            byte[] received = await reader.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal([.. header, .. data, .. tail], received);
        }
    }

    [Fact]
    public void FullBufferAndNoReader_EndsWithEagain_AfterTheSendTimeout()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (b)
        using (var vector = new SendVector(1))
        {
            a.SendTimeout = 100;
            byte[] data = new byte[256 * 1024];
            int errno = 0;
            for (int i = 0; i < 1000 && errno == 0; i++)
            {
                vector.Clear();
                vector.Add(data);
                vector.SendOnce(a.SafeHandle, out errno);
            }

            Assert.Equal(Errno.EAGAIN, errno);
        }
    }

    [Fact]
    public void ClosedPeer_GivesEpipe_NotASignal()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (var vector = new SendVector(2))
        {
            b.Dispose();
            vector.Add(new byte[] { 1 });
            vector.Add(new byte[] { 2 });
            nint n = vector.SendOnce(a.SafeHandle, out int errno);
            Assert.Equal(-1, n);
            Assert.Equal(Errno.EPIPE, errno);
            Assert.Equal(2, vector.PendingBytes);
        }
    }

    [Fact]
    public async Task SendAll_SendsPastTheSocketBuffer_ThenAfterAClosedPeer_ReturnsEpipeAndForgetsTheList()
    {
        (Socket a, Socket b) = UnixSocketPair.Create();
        using (a)
        using (var vector = new SendVector(2))
        {
            a.SendBufferSize = 4096;
            byte[] data = new byte[1 << 20];
            Pattern(data, 5);
            vector.Add(new byte[] { 1, 2 });
            vector.Add(data);
            Task<byte[]> reader = Task.Run(() => UnixSocketPair.ReceiveExactly(b, data.Length + 2));
            Assert.Equal(0, vector.SendAll(a.SafeHandle));
            Assert.Equal(0, vector.PendingBytes);
            Assert.Equal([1, 2, .. data], await reader.WaitAsync(TimeSpan.FromSeconds(30)));

            b.Dispose();
            vector.Add(new byte[] { 3 });
            Assert.Equal(Errno.EPIPE, vector.SendAll(a.SafeHandle));
            Assert.Equal(0, vector.PendingBytes);
            Assert.False(vector.IsFull);
        }
    }

    [Fact]
    public void Full_RefusesAnotherBuffer_UntilCleared()
    {
        using var vector = new SendVector(2);
        vector.Add(new byte[] { 1 });
        vector.Add(new byte[] { 2 });
        Assert.True(vector.IsFull);
        Assert.Throws<InvalidOperationException>(() => vector.Add(new byte[] { 3 }));
        vector.Clear();
        Assert.False(vector.IsFull);
        Assert.Equal(0, vector.PendingBytes);
        vector.Add(new byte[] { 3 });
        Assert.Equal(1, vector.PendingBytes);
    }

    private static void Pattern(Span<byte> span, int seed)
    {
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)((i * seed) ^ (i >> 8));
        }
    }
}
