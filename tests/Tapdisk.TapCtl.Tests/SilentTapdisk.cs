using System.Net.Sockets;

namespace Tapdisk.TapCtl.Tests;

/// <summary>A stand-in daemon that accepts and closes without replying, after reading the request or not (§9.3).</summary>
public sealed class SilentTapdisk : IDisposable
{
    private readonly Socket _listener;
    private readonly Task _loop;

    private SilentTapdisk(Socket listener, bool readRequest)
    {
        _listener = listener;
        _loop = Task.Run(async () =>
        {
            while (true)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptAsync();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }

                using (client)
                {
                    if (readRequest)
                    {
                        byte[] buffer = new byte[544];
                        int got = 0;
                        while (got < buffer.Length)
                        {
                            int n = await client.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None);
                            if (n == 0)
                            {
                                break;
                            }

                            got += n;
                        }
                    }
                }
            }
        });
    }

    public static SilentTapdisk Start(string path, bool readRequest)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(32);
        return new SilentTapdisk(listener, readRequest);
    }

    public void Dispose()
    {
        _listener.Dispose();
        _loop.Wait(TimeSpan.FromSeconds(10));
    }
}
