namespace Tapdisk.Nbd.Tests;

public sealed class NbdServerOptionsTests
{
    [Fact]
    public void HandshakeTimeout_Default_Is10Seconds_AsQemuNbd()
    {
        Assert.Equal(TimeSpan.FromSeconds(10), new NbdServerOptions().HandshakeTimeout);
    }
}
