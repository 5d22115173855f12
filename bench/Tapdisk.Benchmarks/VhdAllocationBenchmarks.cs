using BenchmarkDotNet.Attributes;
using Tapdisk.Abi;
using Tapdisk.Drivers.Vhd;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// First write into unallocated dynamic-VHD blocks: each operation is a 4 KiB write that allocates a 2 MiB block
/// (zeroed data area, bitmap, fdatasync with SafeAllocation, BAT sector). A new empty image per iteration keeps
/// it repeatable, hence one invocation per iteration; 256 of the image's 512 blocks per iteration keeps an iteration
/// near BDN's 100 ms minimum.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class VhdAllocationBenchmarks
{
    public const int BlocksPerInvoke = 256;
    private const int WriteBytes = 4096;
    private const string ImageName = "vhd-allocate.vhd";

    private AlignedMemory? _buffer;
    private Memory<byte> _memory;
    private VhdImage? _image;

    /// <summary>O_DIRECT (the default) or buffered through the page cache.</summary>
    [Params(true, false)]
    public bool DirectIo { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _buffer = AlignedBufferPool.Shared.Rent(WriteBytes);
        _memory = _buffer.Memory[..WriteBytes];
        BenchImages.Pattern().AsSpan(0, WriteBytes).CopyTo(_memory.Span);
    }

    [IterationSetup]
    public void CreateImage()
    {
        string path = BenchImages.CreateEmptyVhd(ImageName);
        _image = VhdImage.Open(path, ImageOpenOptions.ReadWrite with { DirectIo = DirectIo }, BenchImages.Opener);
    }

    [Benchmark(OperationsPerInvoke = BlocksPerInvoke)]
    [BytesPerOperation(WriteBytes)]
    public void VhdImage_AllocatingWrite4K()
    {
        VhdImage image = _image!;
        long blockBytes = image.BlockSizeBytes;
        for (int i = 0; i < BlocksPerInvoke; i++)
        {
            // Spread over the disk so BAT sectors differ, as a guest's scattered first writes would.
            long block = (long)i * (image.BlockCount / BlocksPerInvoke);
            Sync.Complete(image.WriteAsync(block * blockBytes, _memory));
        }
    }

    [IterationCleanup]
    public void CloseImage()
    {
        _image?.Dispose();
        _image = null;
        File.Delete(Path.Combine(BenchImages.Folder, ImageName));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_buffer is not null)
        {
            AlignedBufferPool.Shared.Return(_buffer);
            _buffer = null;
        }
    }
}
