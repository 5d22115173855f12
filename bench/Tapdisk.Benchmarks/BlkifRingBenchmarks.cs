using BenchmarkDotNet.Attributes;
using Tapdisk.Abi;
using Tapdisk.Blkif;
using Tapdisk.Testing;
using Tapdisk.Testing.Xen;

namespace Tapdisk.Benchmarks;

/// <summary>
/// The blkif ring loop in process (Garnet's embedded style): a blkfront-like frontend pushes batches of 4 KiB requests
/// through the fake gntdev/evtchn into a memory image and waits for the notified responses. Per operation = one request,
/// including its grant copy, both index handshakes, the event round trip per batch and the frontend's own work.
/// </summary>
[MemoryDiagnoser]
public class BlkifRingBenchmarks : IDisposable
{
    private const int Batches = 16;
    private const int BatchSize = 32;
    private const int OpsPerInvoke = Batches * BatchSize;
    private const long DiskBytes = 64L * 1024 * 1024;

    private FakeXen _xen = null!;
    private TestFrontend _frontend = null!;
    private BlkifRing _ring = null!;
    private BlkifSegment[][] _segments = null!;
    private BlkifTestResponse[] _responses = null!;
    private ulong _id;

    [Params(0, 2)]
    public int RingPageOrder { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _xen = new FakeXen();
        var image = new MemoryImage(DiskBytes);
        byte[] fill = new byte[1024 * 1024];
        for (long offset = 0; offset < DiskBytes; offset += fill.Length)
        {
            image.WriteAsync(offset, fill).AsTask().GetAwaiter().GetResult();
        }

        _frontend = new TestFrontend(_xen, BlkifProtocol.X64, RingPageOrder);
        _segments = new BlkifSegment[BatchSize][];
        for (int i = 0; i < BatchSize; i++)
        {
            (int _, uint gref) = _frontend.AllocateDataPage();
            _segments[i] = [new BlkifSegment { Gref = gref, FirstSect = 0, LastSect = 7 }];
        }

        _responses = new BlkifTestResponse[BatchSize];
        _ring = BlkifRing.Connect(_frontend.Parameters, _xen, image);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ring?.DisconnectAsync().GetAwaiter().GetResult();
        _frontend?.Dispose();
        _xen?.Dispose();
        GC.SuppressFinalize(this);
    }

    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    public void BlkifRing_Read4K() => Run(BlkifConstants.OpRead);

    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    public void BlkifRing_Write4K() => Run(BlkifConstants.OpWrite);

    private void Run(byte operation)
    {
        for (int b = 0; b < Batches; b++)
        {
            for (int i = 0; i < BatchSize; i++)
            {
                ulong id = ++_id;
                _frontend.QueueRequest(operation, id, (id * 8) % (DiskBytes / 512), _segments[i]);
            }

            _frontend.Push();
            _frontend.WaitForResponses(_responses, TimeSpan.FromSeconds(30));
        }
    }
}
