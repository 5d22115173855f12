using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Tapdisk.Abi;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// nbdclient&lt;pid&gt; (control-xen.md 1): listening from start-up to exit; a socket passed to it is closed at once with
/// a logged reason, because this tapdisk's nbd disk type connects by path or host:port only.
/// </summary>
public sealed class NbdClientReceiverTests : IntegrationTest
{
    [Fact]
    public void PassedSocket_IsClosedAndRefusedInTheLog_SocketGoneAtExit()
    {
        string logDir = Path.Combine(Root, "log");
        Environment["TAPDISK_LOG_DIR"] = logDir;
        int pid = Spawn();
        string receiver = Path.Combine(Root, "nbdclient" + pid.ToString(CultureInfo.InvariantCulture));
        Assert.True(File.Exists(receiver), $"{receiver} missing after start-up");

        // A connected pair: one end is passed to tapdisk, the other shows when tapdisk closes it (EOF).
        using var pairListener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string pairPath = Path.Combine(Root, "pair.sock");
        pairListener.Bind(new UnixDomainSocketEndPoint(pairPath));
        pairListener.Listen(1);
        using var passed = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        passed.Connect(new UnixDomainSocketEndPoint(pairPath));
        using Socket kept = pairListener.Accept();

        using (var carrier = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            carrier.Connect(new UnixDomainSocketEndPoint(receiver));
            FdPassing.Send(carrier.SafeHandle, Encoding.ASCII.GetBytes("mirror-1"), passed.SafeHandle);
        }

        passed.Close();

        // Only tapdisk's copy is left open now: EOF on the other end means tapdisk closed it rather than stashing it.
        kept.ReceiveTimeout = (int)HangGuard.TotalMilliseconds;
        Assert.Equal(0, kept.Receive(new byte[16]));

        string log = File.ReadAllText(Path.Combine(logDir, $"tapdisk.{pid}.log"));
        Assert.Contains("'mirror-1'", log, StringComparison.Ordinal);
        Assert.Contains("connects by socket path or host:port only", log, StringComparison.Ordinal);

        // A tapdisk exits at its last DETACH: attach one minor and detach it.
        int minor = Allocate();
        string p = pid.ToString(CultureInfo.InvariantCulture), m = minor.ToString(CultureInfo.InvariantCulture);
        TapCtlOk("attach", "-p", p, "-m", m);
        TapCtlOk("detach", "-p", p, "-m", m);
        WaitForExit(pid);
        Assert.False(File.Exists(receiver), "nbdclient<pid> must be removed at exit");
        TapCtlOk("free", "-m", m);
    }
}
