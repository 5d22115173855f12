using System.Threading.Channels;
using Tapdisk.Testing;
using Tapdisk.XenStore;
using Xunit;

namespace Tapdisk.Tapback.Tests;

public sealed class XenStoreClientTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _dir = new();
    private TestXenStored _store = null!;
    private XenStoreClient _client = null!;

    public async Task InitializeAsync()
    {
        _store = new TestXenStored(_dir.File("xs.sock"));
        _client = await Connect();
    }

    public async Task DisposeAsync()
    {
        // xunit calls Dispose after this.
        await _client.DisposeAsync();
    }

    public void Dispose()
    {
        _store?.Dispose();
        _dir.Dispose();
    }

    private Task<XenStoreClient> Connect() => XenStoreClient.ConnectAsync(new XenStoreClientOptions { Endpoints = [_store.Endpoint], ReconnectMaximumDelay = TimeSpan.FromMilliseconds(200) });

    [Fact]
    public async Task ReadWriteDirectoryRemove_RoundTrip()
    {
        await _client.WriteAsync("/local/domain/0/backend/vbd3/5/51712/mode", "w");
        await _client.WriteAsync("/local/domain/0/backend/vbd3/5/51712/state", "1");
        Assert.Equal("w", await _client.ReadAsync("/local/domain/0/backend/vbd3/5/51712/mode"));
        Assert.Equal(["mode", "state"], await _client.DirectoryAsync("/local/domain/0/backend/vbd3/5/51712"));

        // A value is not NUL-terminated on the wire and may be empty.
        await _client.WriteAsync("/local/domain/0/empty", string.Empty);
        Assert.Equal(string.Empty, await _client.ReadAsync("/local/domain/0/empty"));

        await _client.RemoveAsync("/local/domain/0/backend/vbd3/5");
        Assert.Null(await _client.TryReadAsync("/local/domain/0/backend/vbd3/5/51712/mode"));
        Assert.Null(await _client.TryDirectoryAsync("/local/domain/0/backend/vbd3/5"));
        Assert.Empty(await _client.DirectoryAsync("/local/domain/0/backend/vbd3"));
    }

    [Fact]
    public async Task Read_MissingNode_ThrowsWithErrorName()
    {
        XenStoreException e = await Assert.ThrowsAsync<XenStoreException>(() => _client.ReadAsync("/local/domain/0/nonexistent"));
        Assert.Equal("ENOENT", e.ErrorName);
        Assert.Equal(XenStoreErrors.ENOENT, e.Errno);
    }

    [Fact]
    public async Task Remove_MissingLeafIsOk_MissingParentIsEnoent()
    {
        await _client.RemoveAsync("/local/domain/0/absent");
        XenStoreException e = await Assert.ThrowsAsync<XenStoreException>(() => _client.RemoveAsync("/local/domain/0/absent/child"));
        Assert.Equal(XenStoreErrors.ENOENT, e.Errno);
    }

    [Fact]
    public async Task RelativePath_ResolvesAgainstOwnDomain()
    {
        await _client.WriteAsync("backend/vbd3/5/51712/probe", "hello");
        Assert.Equal("hello", await _client.ReadAsync("/local/domain/0/backend/vbd3/5/51712/probe"));
    }

    [Fact]
    public async Task Permissions_RoundTripAndInherit()
    {
        await _client.WriteAsync("/local/domain/0/backend/vbd3/5/51712/probe", "x");
        XenStorePermission[] set = [new(XenStoreAccess.None, 0), new(XenStoreAccess.Read, 5)];
        await _client.SetPermissionsAsync("/local/domain/0/backend/vbd3/5/51712", set);
        Assert.Equal(set, await _client.GetPermissionsAsync("/local/domain/0/backend/vbd3/5/51712"));

        // A node created afterwards inherits its parent's list (what lets the frontend read the backend's keys).
        await _client.WriteAsync("/local/domain/0/backend/vbd3/5/51712/sectors", "8");
        Assert.Equal(set, await _client.GetPermissionsAsync("/local/domain/0/backend/vbd3/5/51712/sectors"));
        Assert.Equal("r5", set[1].ToString());
        Assert.False(XenStorePermission.TryParse("x5", out _));
        Assert.False(XenStorePermission.TryParse("r", out _));
    }

    [Fact]
    public async Task DomainQueries_AnswerAsXenstored()
    {
        Assert.Equal("/local/domain/7", await _client.GetDomainPathAsync(7));
        Assert.True(await _client.IsDomainIntroducedAsync(0));
        Assert.False(await _client.IsDomainIntroducedAsync(7));
    }

    [Fact]
    public void ErrorTable_MapsBothWays_UnknownIsEinval()
    {
        foreach (string name in new[] { "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM" })
        {
            Assert.Equal(name, XenStoreErrors.ToName(XenStoreErrors.ToErrno(name)));
        }

        Assert.Equal(11, XenStoreErrors.ToErrno("EAGAIN"));
        Assert.Equal(106, XenStoreErrors.ToErrno("EISCONN"));
        Assert.Equal(XenStoreErrors.EINVAL, XenStoreErrors.ToErrno("EWHATEVER"));
    }

    [Fact]
    public async Task WatchSameTokenTwice_IsEexist()
    {
        await _client.WatchAsync("/local/domain/0/a", "t");
        XenStoreException e = await Assert.ThrowsAsync<XenStoreException>(() => _client.WatchAsync("/local/domain/0/a", "t"));
        Assert.Equal(XenStoreErrors.EEXIST, e.Errno);
    }

    [Fact]
    public async Task Watch_FiresAtOnceThenForNodeAndDescendantsOnly()
    {
        await _client.WatchAsync("/local/domain/0/backend/vbd3", "tok");
        Assert.Equal(new XenStoreEvent(XenStoreEventKind.Watch, "/local/domain/0/backend/vbd3", "tok"), await NextEvent());

        await _client.WriteAsync("/local/domain/0/other", "x");
        await _client.WriteAsync("/local/domain/0/backend/vbd3-not-a-child", "x");
        await _client.WriteAsync("/local/domain/0/backend/vbd3/5/51712/state", "1");
        Assert.Equal("/local/domain/0/backend/vbd3/5/51712/state", (await NextEvent()).Path);

        await _client.RemoveAsync("/local/domain/0/backend/vbd3/5");
        Assert.Equal("/local/domain/0/backend/vbd3/5", (await NextEvent()).Path);

        await _client.UnwatchAsync("/local/domain/0/backend/vbd3", "tok");
        await _client.WriteAsync("/local/domain/0/backend/vbd3/6", "x");
        await _client.WriteAsync("/local/domain/0/flush", "x");
        Assert.False(_client.Events.TryRead(out XenStoreEvent stray), $"unexpected event {stray}");
    }

    [Fact]
    public async Task Watch_OnChildOfRemovedNode_Fires()
    {
        await _client.WriteAsync("/local/domain/5/device/vbd/51712/state", "4");
        await _client.WatchAsync("/local/domain/5/device/vbd/51712/state", "front");
        _ = await NextEvent();
        _store.Remove("/local/domain/5");
        Assert.Equal("/local/domain/5/device/vbd/51712/state", (await NextEvent()).Path);
    }

    [Fact]
    public async Task ConcurrentRequestsAndEvents_AreMatchedByRequestId()
    {
        await _client.WatchAsync("/local/domain/0/data", "tok");
        _ = await NextEvent();
        Task[] writers = [.. Enumerable.Range(0, 64).Select(i => _client.WriteAsync($"/local/domain/0/data/k{i}", $"v{i}"))];
        await Task.WhenAll(writers);
        string[] values = await Task.WhenAll(Enumerable.Range(0, 64).Select(i => _client.ReadAsync($"/local/domain/0/data/k{i}")));
        Assert.Equal(Enumerable.Range(0, 64).Select(i => $"v{i}"), values);
        var seen = new HashSet<string>();
        for (int i = 0; i < 64; i++)
        {
            seen.Add((await NextEvent()).Path);
        }

        Assert.Equal(64, seen.Count);
    }

    [Fact]
    public async Task Transaction_ConflictIsRetried_WatchesFireOnlyOnCommit()
    {
        await _client.WriteAsync("/local/domain/0/counter", "0");
        await _client.WatchAsync("/local/domain/0/result", "tok");
        _ = await NextEvent();
        int attempts = 0;
        await _client.TransactionAsync(async t =>
        {
            attempts++;
            string value = await _client.ReadAsync("/local/domain/0/counter", t);
            if (attempts == 1)
            {
                // Someone else changes what this transaction read: the commit must fail with EAGAIN and be redone.
                _store.Write("/local/domain/0/counter", "41");
            }

            await _client.WriteAsync("/local/domain/0/result", (int.Parse(value, System.Globalization.CultureInfo.InvariantCulture) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), t);
            Assert.False(_client.Events.TryRead(out _), "an event fired before the commit");
        });

        Assert.Equal(2, attempts);
        Assert.Equal(1, _store.ConflictedTransactions);
        Assert.Equal("42", _store.Read("/local/domain/0/result"));
        Assert.Equal("/local/domain/0/result", (await NextEvent()).Path);
    }

    [Fact]
    public async Task Transaction_EndlessConflicts_GiveEagain()
    {
        await using XenStoreClient client = await XenStoreClient.ConnectAsync(new XenStoreClientOptions { Endpoints = [_store.Endpoint], TransactionAttempts = 3 });
        _store.ForcedConflicts = 10;
        XenStoreException e = await Assert.ThrowsAsync<XenStoreException>(() => client.TransactionAsync(t => client.WriteAsync("/local/domain/0/x", "1", t)));
        Assert.Equal(XenStoreErrors.EAGAIN, e.Errno);
        Assert.Null(_store.Read("/local/domain/0/x"));
    }

    [Fact]
    public async Task Transaction_BodyFailure_Aborts()
    {
        await Assert.ThrowsAsync<InvalidOperationException>(() => _client.TransactionAsync(async t =>
        {
            await _client.WriteAsync("/local/domain/0/half", "1", t);
            throw new InvalidOperationException("body failed");
        }));
        Assert.Null(_store.Read("/local/domain/0/half"));
        Assert.Contains(_store.Requests, r => r.Type == XenStoreMessageType.TransactionEnd && r.Payload == "F|");
    }

    [Fact]
    public async Task XenstoredRestart_ClientReconnectsAndReregistersWatches()
    {
        await _client.WatchAsync("/local/domain/0/backend/vbd3", "tok");
        _ = await NextEvent();

        _store.Stop();
        Assert.Equal(XenStoreEventKind.Disconnected, (await NextEvent()).Kind);
        await Assert.ThrowsAsync<XenStoreConnectionLostException>(() => _client.ReadAsync("/local/domain/0"));

        // Both the re-registered watch's initial event and Reconnected arrive, in either order: the watch event comes
        // from the connection's reader, Reconnected from the reconnect loop once the WATCH reply is in, and the
        // client promises no order between them (an owner re-reads everything on Reconnected anyway).
        _store.Start();
        XenStoreEvent[] after = [await NextEvent(), await NextEvent()];
        Assert.Contains(new XenStoreEvent(XenStoreEventKind.Watch, "/local/domain/0/backend/vbd3", "tok"), after);
        Assert.Contains(XenStoreEvent.Reconnected, after);

        await _client.WriteAsync("/local/domain/0/backend/vbd3/5", "x");
        Assert.Equal("/local/domain/0/backend/vbd3/5", (await NextEvent()).Path);
        Assert.Equal(1, _store.WatchCount);
    }

    [Fact]
    public async Task OversizedMessageFromServer_DropsConnectionAndReconnects()
    {
        await _client.WriteAsync("/local/domain/0/x", "1");
        _store.SendRawToAll(TestXenStored.RawHeader((uint)XenStoreMessageType.Read, 1, XenStoreHeader.PayloadMax + 1));
        Assert.Equal(XenStoreEventKind.Disconnected, (await NextEvent()).Kind);
        Assert.Equal(XenStoreEventKind.Reconnected, (await NextEvent()).Kind);
        Assert.Equal("1", await _client.ReadAsync("/local/domain/0/x"));
    }

    [Fact]
    public async Task OversizedRequest_IsRefusedLocally()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => _client.WriteAsync("/local/domain/0/big", new string('x', 5000)));
        await _client.WriteAsync("/local/domain/0/after", "fine");
        Assert.Equal("fine", await _client.ReadAsync("/local/domain/0/after"));
    }

    [Fact]
    public async Task Connect_NoEndpoint_Throws()
    {
        XenStoreConnectionLostException e = await Assert.ThrowsAsync<XenStoreConnectionLostException>(() =>
            XenStoreClient.ConnectAsync(new XenStoreClientOptions { Endpoints = [XenStoreEndpoint.Socket(_dir.File("none.sock"))] }));
        Assert.Contains("none.sock", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DefaultCandidates_HonourXenstoredPathFirst()
    {
        IReadOnlyList<XenStoreEndpoint> candidates = XenStoreEndpoint.DefaultCandidates();
        Assert.Equal(XenStoreEndpoint.XenbusDevicePath, candidates[^1].Path);
        Assert.True(candidates[^1].IsDevice);
        Assert.Contains(candidates, c => c.Path == XenStoreEndpoint.DefaultSocketPath && !c.IsDevice);
    }

    [Fact]
    public void Header_RoundTrips()
    {
        var header = new XenStoreHeader(XenStoreMessageType.TransactionEnd, 0xDEADBEEF, 7, 4096);
        byte[] bytes = new byte[XenStoreHeader.Size];
        header.Write(bytes);
        Assert.Equal(header, XenStoreHeader.Read(bytes));
        Assert.Equal(7, bytes[0]);
        Assert.Equal(0xEF, bytes[4]);
        Assert.Equal(7, bytes[8]);
        Assert.Equal(0x10, bytes[13]);
    }

    private async Task<XenStoreEvent> NextEvent()
    {
        using var cts = new CancellationTokenSource(s_hangGuard);
        try
        {
            return await _client.Events.ReadAsync(cts.Token);
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException("event channel closed");
        }
    }
}
