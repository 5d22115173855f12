using Tapdisk.Abi;
using Tapdisk.Storage;
using Tapdisk.Testing.Xen;
using Xunit;

namespace Tapdisk.Blkif.Tests;

/// <summary>A fake hypervisor, one test frontend and a connected backend ring over <see cref="Image"/>.</summary>
internal sealed class RingHarness : IAsyncDisposable
{
    public const int DataPages = 96;

    private readonly (int Page, uint Gref)[] _data;
    private ulong _nextId = 1;

    public RingHarness(IBlockImage image, BlkifProtocol protocol = BlkifProtocol.X64, int order = 0, BlkifRingOptions? options = null, FakeXen? xen = null, ushort domid = TestFrontend.DefaultDomid, uint devid = 51712)
    {
        OwnsXen = xen is null;
        Xen = xen ?? new FakeXen();
        Image = image;
        Frontend = new TestFrontend(Xen, protocol, order, domid, devid);
        _data = new (int, uint)[DataPages];
        for (int i = 0; i < _data.Length; i++)
        {
            _data[i] = Frontend.AllocateDataPage();
        }

        Backend = new BlockBackend(image, new BlockBackendOptions { Name = "ring harness" });
        Ring = BlkifRing.Connect(Frontend.Parameters, Xen, Backend, options);
    }

    /// <summary>The VBD's backend the ring serves (its gate pauses and resumes the ring).</summary>
    public BlockBackend Backend { get; }

    public bool OwnsXen { get; }

    public FakeXen Xen { get; }

    public IBlockImage Image { get; }

    public TestFrontend Frontend { get; }

    public BlkifRing Ring { get; }

    public ulong NextId() => _nextId++;

    public (int Page, uint Gref) Data(int i) => _data[i];

    /// <summary>Full-page segments over data pages starting at <paramref name="firstPage"/>, covering <paramref name="bytes"/>.</summary>
    public BlkifSegment[] Segments(int firstPage, int bytes)
    {
        int count = (bytes + 4095) / 4096;
        var segments = new BlkifSegment[count];
        for (int i = 0; i < count; i++)
        {
            int length = Math.Min(4096, bytes - (i * 4096));
            segments[i] = new BlkifSegment { Gref = _data[firstPage + i].Gref, FirstSect = 0, LastSect = (byte)((length / 512) - 1) };
        }

        return segments;
    }

    public void Fill(int firstPage, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i * 4096 < data.Length; i++)
        {
            ReadOnlySpan<byte> part = data.Slice(i * 4096, Math.Min(4096, data.Length - (i * 4096)));
            part.CopyTo(Frontend.PageSpan(_data[firstPage + i].Page));
        }
    }

    public byte[] Collect(int firstPage, int bytes)
    {
        byte[] result = new byte[bytes];
        for (int i = 0; i * 4096 < bytes; i++)
        {
            int length = Math.Min(4096, bytes - (i * 4096));
            Frontend.PageSpan(_data[firstPage + i].Page)[..length].CopyTo(result.AsSpan(i * 4096));
        }

        return result;
    }

    /// <summary>One request, pushed, answered: its status.</summary>
    public short Submit(byte operation, ulong sector, BlkifSegment[] segments)
    {
        ulong id = NextId();
        Frontend.QueueRequest(operation, id, sector, segments);
        Frontend.Push();
        BlkifTestResponse r = Frontend.WaitForResponses(1).Single();
        Assert.Equal(id, r.Id);
        Assert.Equal(operation, r.Operation);
        return r.Status;
    }

    public short Write(ulong sector, ReadOnlySpan<byte> data, int firstPage = 0)
    {
        Fill(firstPage, data);
        return Submit(BlkifConstants.OpWrite, sector, Segments(firstPage, data.Length));
    }

    public byte[] Read(ulong sector, int bytes, int firstPage = 0)
    {
        for (int i = 0; i * 4096 < bytes; i++)
        {
            Frontend.PageSpan(_data[firstPage + i].Page).Fill(0xEE);
        }

        short status = Submit(BlkifConstants.OpRead, sector, Segments(firstPage, bytes));
        Assert.Equal(BlkifConstants.RspOkay, status);
        return Collect(firstPage, bytes);
    }

    public async ValueTask DisposeAsync()
    {
        await Ring.DisconnectAsync();
        Backend.Dispose();
        Frontend.Dispose();
        if (OwnsXen)
        {
            Xen.Dispose();
        }
    }

    public static byte[] Pattern(int bytes, int seed)
    {
        byte[] data = new byte[bytes];
        new Random(seed).NextBytes(data);
        return data;
    }
}
