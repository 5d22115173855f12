using Microsoft.Extensions.Logging;

namespace Tapdisk.Nbd.Tests;

public sealed class HandshakeTimeoutLogTests
{
    private const int HandshakeTimedOutEventId = 9;

    [Fact]
    public void Dropped_Burst_LoggedOnceWithTheCountWhenTheWindowEnds()
    {
        var logger = new ListLogger();
        var time = new ManualTimeProvider();
        var log = new HandshakeTimeoutLog(logger, TimeSpan.FromSeconds(10), time);

        for (int i = 0; i < 200; i++)
        {
            log.Dropped();
        }

        Assert.Empty(logger.Entries);
        Assert.Equal(1, time.PendingTimers);
        time.FireAll();

        ListLogger.Entry entry = Assert.Single(logger.Entries);
        Assert.Equal(HandshakeTimedOutEventId, entry.EventId);
        Assert.Equal(LogLevel.Information, entry.Level);
        Assert.Equal("NBD: 200 clients dropped for not finishing the handshake within 10 s", entry.Message);
        Assert.Equal(0, time.PendingTimers);
    }

    [Fact]
    public void Dropped_AfterAReport_StartsANewWindow()
    {
        var logger = new ListLogger();
        var time = new ManualTimeProvider();
        var log = new HandshakeTimeoutLog(logger, TimeSpan.FromMilliseconds(300), time);
        log.Dropped();
        time.FireAll();

        log.Dropped();
        log.Dropped();
        log.Dropped();
        Assert.Single(logger.Entries);
        time.FireAll();

        Assert.Equal([1, 3], logger.Entries.Select(e => (int)e.Fields["Count"]!));
        Assert.Equal(0.3, (double)logger.Entries[1].Fields["TimeoutSeconds"]!);
    }
}
