using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Tapdisk.Abi;
using Tapdisk.Blkif;
using Tapdisk.Drivers.Raw;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;
using Tapdisk.Testing.Xen;

namespace Tapdisk.Benchmarks;

/// <summary>The image behind the ring in <see cref="BlkifRingFileBenchmarks"/>.</summary>
public enum RingImageKind
{
    /// <summary>The "aio" driver over the fully written 1 GiB raw file.</summary>
    Raw,

    /// <summary>A 1 GiB dynamic VHD with every block allocated and written, so reads hit data and writes overwrite.</summary>
    Vhd,
}

/// <summary>
/// The blkif ring in process against a real O_DIRECT file: the blkfront-like <see cref="TestFrontend"/> pushes requests
/// through the fake gntdev/evtchn into <see cref="BlkifRing"/>, which serves them from a 1 GiB image under
/// <see cref="BenchImages.Folder"/> (disk-backed). Queue depth is the number of requests kept in flight on the ring: the
/// frontend primes that many, then reads one response at a time and refills its slot at once, so the ring never holds
/// fewer until the invocation's last requests drain. Per operation = one request (grant copy, image I/O, both index
/// handshakes, event round trips and the frontend's own work). bench/ring-vs-fio.sh sets these figures beside fio's
/// libaio ones on the same file.
/// </summary>
[MemoryDiagnoser]
public class BlkifRingFileBenchmarks : IDisposable
{
    /// <summary>Requests per invocation: enough that the QD32 drain at the end (31 requests) is a small tail.</summary>
    public const int OpsPerInvoke = 512;

    public const int ReadBytes = 4096;
    public const int WriteBytes = 64 * 1024;

    private const int MaxDepth = 32;
    private const int PageSize = 4096;
    private const int SectorSize = 512;
    private const int PagesPerWrite = WriteBytes / PageSize;

    // A power of two, so the cursor wraps with a mask; the id's low bits carry the tag (the request's pages).
    private const int OffsetCount = 1 << 14;
    private const int TagBits = 8;
    private const ulong TagMask = (1 << TagBits) - 1;
    private const long WarmStrideBytes = 2 * 1024 * 1024;

    private static readonly TimeSpan s_responseTimeout = TimeSpan.FromSeconds(60);

    private FakeXen? _xen;
    private TestFrontend? _frontend;
    private BlkifRing? _ring;
    private IBlockImage? _image;

    // Per tag (one per request the frontend may keep in flight): a one-segment 4 KiB read, and the indirect page
    // describing a 16-segment 64 KiB write (more than the 11 direct segments, so blkfront sends it indirect).
    private BlkifSegment[][] _readSegments = [];
    private uint[][] _writeIndirectRefs = [];
    private readonly int[] _freeTags = new int[MaxDepth];
    private int _freeTagCount;
    private readonly BlkifTestResponse[] _response = new BlkifTestResponse[1];

    private ulong[] _readSectors = [];
    private ulong[] _writeSectors = [];
    private int _cursor;
    private ulong _sequence;

    [Params(RingImageKind.Raw, RingImageKind.Vhd)]
    public RingImageKind Image { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        ImageOpenOptions options = ImageOpenOptions.ReadWrite with { DirectIo = true };
        _image = Image switch
        {
            RingImageKind.Raw => RawImage.Open(BenchImages.PrepareRaw(), options),
            _ => VhdImage.Open(BenchImages.PrepareVhd(), options, BenchImages.Opener),
        };

        // Touch every 2 MiB (a VHD block) once so lazily loaded metadata is cached: the figures are for the steady state.
        AlignedMemory warm = AlignedBufferPool.Shared.Rent(ReadBytes);
        for (long offset = 0; offset < _image.SizeBytes; offset += WarmStrideBytes)
        {
            Sync.Complete(_image.ReadAsync(offset, warm.Memory[..ReadBytes]));
        }

        AlignedBufferPool.Shared.Return(warm);

        _xen = new FakeXen();
        _frontend = new TestFrontend(_xen, BlkifProtocol.X64, order: 0);
        if (_frontend.SlotCount < MaxDepth)
        {
            throw new InvalidOperationException($"the ring has {_frontend.SlotCount} slots, fewer than queue depth {MaxDepth}");
        }

        byte[] pattern = BenchImages.Pattern();
        _readSegments = new BlkifSegment[MaxDepth][];
        _writeIndirectRefs = new uint[MaxDepth][];
        for (int tag = 0; tag < MaxDepth; tag++)
        {
            (int _, uint readRef) = _frontend.AllocateDataPage();
            _readSegments[tag] = [new BlkifSegment { Gref = readRef, FirstSect = 0, LastSect = 7 }];

            (int indirectPage, uint indirectRef) = _frontend.AllocateDataPage(readOnly: true);
            Span<BlkifSegment> descriptors = MemoryMarshal.Cast<byte, BlkifSegment>(_frontend.PageSpan(indirectPage));
            for (int i = 0; i < PagesPerWrite; i++)
            {
                (int dataPage, uint dataRef) = _frontend.AllocateDataPage(readOnly: true);
                pattern.AsSpan(((tag * PagesPerWrite) + i) * PageSize % pattern.Length, PageSize).CopyTo(_frontend.PageSpan(dataPage));
                descriptors[i] = new BlkifSegment { Gref = dataRef, FirstSect = 0, LastSect = 7 };
            }

            _writeIndirectRefs[tag] = [indirectRef];
        }

        ResetTags();
        var random = new Random(42);
        _readSectors = RandomSectors(random, _image.SizeBytes, ReadBytes);
        _writeSectors = RandomSectors(random, _image.SizeBytes, WriteBytes);

        _ring = BlkifRing.Connect(_frontend.Parameters, _xen, _image);
        string direct = _image is RawImage raw ? raw.IsDirect.ToString() : "not reported";
        Console.WriteLine($"// ring over {_image.DriverName} {_image.Path}, DirectIo requested=True, effective={direct}, {_frontend.SlotCount} ring slots");
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ring?.DisconnectAsync().GetAwaiter().GetResult();
        _ring = null;
        _frontend?.Dispose();
        _frontend = null;
        _xen?.Dispose();
        _xen = null;
        _image?.Dispose();
        _image = null;
        GC.SuppressFinalize(this);
    }

    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    [BytesPerOperation(ReadBytes)]
    public void BlkifRingFile_RandomRead4K_QD1() => Run(write: false, depth: 1);

    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    [BytesPerOperation(ReadBytes)]
    public void BlkifRingFile_RandomRead4K_QD32() => Run(write: false, depth: 32);

    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    [BytesPerOperation(WriteBytes)]
    public void BlkifRingFile_RandomWrite64K_QD32() => Run(write: true, depth: 32);

    /// <summary>Issues <see cref="OpsPerInvoke"/> requests keeping <paramref name="depth"/> in flight; returns with none outstanding.</summary>
    private void Run(bool write, int depth)
    {
        TestFrontend frontend = _frontend!;
        int issued = 0;
        for (; issued < depth; issued++)
        {
            Queue(frontend, write);
        }

        frontend.Push();
        for (int completed = 0; completed < OpsPerInvoke; completed++)
        {
            frontend.WaitForResponses(_response, s_responseTimeout);
            BlkifTestResponse response = _response[0];
            if (response.Status != BlkifConstants.RspOkay)
            {
                throw new InvalidOperationException($"request {response.Id} (operation {response.Operation}) failed with status {response.Status}");
            }

            _freeTags[_freeTagCount++] = (int)(response.Id & TagMask);
            if (issued < OpsPerInvoke)
            {
                Queue(frontend, write);
                issued++;
                frontend.Push();
            }
        }
    }

    private void Queue(TestFrontend frontend, bool write)
    {
        int tag = _freeTags[--_freeTagCount];
        ulong id = (++_sequence << TagBits) | (uint)tag;
        int index = _cursor;
        _cursor = (index + 1) & (OffsetCount - 1);
        if (write)
        {
            frontend.QueueIndirect(BlkifConstants.OpWrite, id, _writeSectors[index], PagesPerWrite, _writeIndirectRefs[tag]);
        }
        else
        {
            frontend.QueueRequest(BlkifConstants.OpRead, id, _readSectors[index], _readSegments[tag]);
        }
    }

    private void ResetTags()
    {
        _freeTagCount = MaxDepth;
        for (int tag = 0; tag < MaxDepth; tag++)
        {
            _freeTags[tag] = MaxDepth - 1 - tag;
        }
    }

    /// <summary>Start sectors of <paramref name="bytes"/>-aligned requests anywhere in the image (fio's default blockalign = bs).</summary>
    private static ulong[] RandomSectors(Random random, long sizeBytes, int bytes)
    {
        long slots = sizeBytes / bytes;
        ulong[] sectors = new ulong[OffsetCount];
        for (int i = 0; i < sectors.Length; i++)
        {
            sectors[i] = (ulong)(random.NextInt64(slots) * bytes / SectorSize);
        }

        return sectors;
    }
}
