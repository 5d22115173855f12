using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tapdisk.Testing;
using Tapdisk.Abi;

namespace Tapdisk.Nbd.Tests;

/// <summary>The socket transport's output over a real UNIX socket pair: written bytes and appended buffers, in order.</summary>
public sealed class SocketTransportTests
{
    [Fact]
    public async Task WrittenBytesAndAppendedBuffers_ArriveInOrder_AcrossChunksAndFullVectors()
    {
        (Socket ours, Socket peer) = UnixSocketPair.Create();
        using var transport = new SocketTransport(ours, TimeSpan.FromSeconds(30));
        using var data = new AlignedMemory(64 * 1024);
        for (int i = 0; i < data.Length; i++)
        {
            data.GetSpan()[i] = (byte)(i * 13);
        }

        PipeWriter output = transport.Output;
        var gather = (IGatherWriter)output;
        var expected = new List<byte>();
        var received = new MemoryStream();
        Task reader = Task.Run(() =>
        {
            var buffer = new byte[64 * 1024];
            int n;
            while ((n = peer.Receive(buffer)) > 0)
            {
                received.Write(buffer, 0, n);
            }
        });

        // 700 replies: more than the vector lists at once (sent in the middle) and headers over several 16 KiB
        // chunks, with a 20 KiB write that needs a chunk of its own.
        for (int i = 0; i < 700; i++)
        {
            int headerLength = 16 + (i % 17);
            Span<byte> span = output.GetSpan(headerLength);
            for (int j = 0; j < headerLength; j++)
            {
                span[j] = (byte)(i + j);
                expected.Add((byte)(i + j));
            }

            output.Advance(headerLength);
            ReadOnlyMemory<byte> piece = data.Memory.Slice(i * 64 % 60_000, 1 + (i % 4096));
            gather.Append(piece);
            expected.AddRange(piece.ToArray());
            if (i == 350)
            {
                byte[] big = [.. Enumerable.Range(0, 20 * 1024).Select(k => (byte)(k >> 3))];
                output.Write(big);
                expected.AddRange(big);
            }
        }

        // A full vector was sent on the way: less than everything waits for the flush.
        Assert.InRange(output.UnflushedBytes, 1, expected.Count - 1);
        Assert.False((await output.FlushAsync()).IsCompleted);
        Assert.Equal(0, output.UnflushedBytes);

        // After a flush the chunks are reused: the next bytes are still right.
        output.Write<byte>([1, 2, 3]);
        gather.Append(data.Memory[..5]);
        expected.AddRange([1, 2, 3, .. data.Memory[..5].ToArray()]);
        Assert.False((await output.FlushAsync()).IsCompleted);
        ours.Shutdown(SocketShutdown.Send);
        await reader.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(expected.ToArray(), received.ToArray());
        peer.Dispose();
    }

    /// <summary>Dropped by Discard, or by a cancelled flush (whose caller gives the buffers back right after).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DroppedOutput_IsNeverSent(bool byCancelledFlush)
    {
        (Socket ours, Socket peer) = UnixSocketPair.Create();
        using var transport = new SocketTransport(ours, TimeSpan.FromSeconds(30));
        PipeWriter output = transport.Output;
        output.Write<byte>([9, 9, 9]);
        ((IGatherWriter)output).Append(new byte[] { 8, 8 });
        if (byCancelledFlush)
        {
            using var cancelled = new CancellationTokenSource();
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await output.FlushAsync(cancelled.Token));
        }
        else
        {
            ((IGatherWriter)output).Discard();
        }

        Assert.Equal(0, output.UnflushedBytes);
        output.Write<byte>([7]);
        Assert.False((await output.FlushAsync()).IsCompleted);
        Assert.Equal([7], UnixSocketPair.ReceiveExactly(peer, 1));
        peer.Dispose();
    }

    [Fact]
    public async Task PeerThatTakesNothing_FailsTheFlushAfterTheStallTimeout_AndShutsTheSocketDown()
    {
        (Socket ours, Socket peer) = UnixSocketPair.Create();
        using var transport = new SocketTransport(ours, TimeSpan.FromMilliseconds(200));
        using var data = new AlignedMemory(4 * 1024 * 1024);
        PipeWriter output = transport.Output;
        output.Write<byte>([1]);
        ((IGatherWriter)output).Append(data.Memory);
        IOException e = await Assert.ThrowsAsync<IOException>(async () => await output.FlushAsync());
        Assert.Contains("took no reply bytes", e.Message, StringComparison.Ordinal);

        // Shut down: the peer reads what was sent, then end of stream.
        var buffer = new byte[64 * 1024];
        while (peer.Receive(buffer) > 0)
        {
        }

        peer.Dispose();
    }
}
