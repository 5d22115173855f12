using BenchmarkDotNet.Attributes;
using Tapdisk.Abi;
using Tapdisk.Storage;

namespace Tapdisk.Benchmarks;

/// <summary>
/// Shared body of the per-driver I/O suites: one 1 GiB image, page-aligned buffers from
/// <see cref="AlignedBufferPool.Shared"/> (so O_DIRECT never bounces), and a fixed pseudo-random offset sequence.
/// Each invocation runs a batch of operations; BDN divides by <c>OperationsPerInvoke</c>, so times are per request.
/// </summary>
public abstract class ImageIoBenchmark
{
    public const int SmallBytes = 4096;
    public const int LargeBytes = 1024 * 1024;
    public const int RandomOpsPerInvoke = 64;
    public const int SequentialOpsPerInvoke = 16;

    // A power of two, so the cursor wraps with a mask.
    private const int RandomOffsetCount = 1 << 14;
    private const long WarmStrideBytes = 2 * 1024 * 1024;

    private IBlockImage? _image;
    private AlignedMemory? _small;
    private AlignedMemory? _large;
    private Memory<byte> _smallMemory;
    private Memory<byte> _largeMemory;
    private long[] _randomOffsets = [];
    private int _randomCursor;
    private long _sequentialOffset;

    /// <summary>O_DIRECT (the default) or buffered through the page cache.</summary>
    [Params(true, false)]
    public bool DirectIo { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _image = OpenImage(ImageOpenOptions.ReadWrite with { DirectIo = DirectIo });
        _small = AlignedBufferPool.Shared.Rent(SmallBytes);
        _large = AlignedBufferPool.Shared.Rent(LargeBytes);
        _smallMemory = _small.Memory[..SmallBytes];
        _largeMemory = _large.Memory[..LargeBytes];
        BenchImages.Pattern().AsSpan(0, SmallBytes).CopyTo(_smallMemory.Span);
        BenchImages.Pattern().CopyTo(_largeMemory.Span);

        var random = new Random(42);
        long slots = _image.SizeBytes / SmallBytes;
        _randomOffsets = new long[RandomOffsetCount];
        for (int i = 0; i < _randomOffsets.Length; i++)
        {
            _randomOffsets[i] = random.NextInt64(slots) * SmallBytes;
        }

        // Touch every 2 MiB (a VHD block) once so lazily loaded metadata (bitmaps, full-block flags) is cached
        // before measurement: the budget is for the steady state.
        for (long offset = 0; offset < _image.SizeBytes; offset += WarmStrideBytes)
        {
            Sync.Complete(_image.ReadAsync(offset, _smallMemory));
        }

        Console.WriteLine($"// {_image.DriverName} {_image.Path}, DirectIo requested={DirectIo}, effective={IsDirect(_image)?.ToString() ?? "not reported"}");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _image?.Dispose();
        _image = null;
        if (_small is not null)
        {
            AlignedBufferPool.Shared.Return(_small);
            _small = null;
        }

        if (_large is not null)
        {
            AlignedBufferPool.Shared.Return(_large);
            _large = null;
        }
    }

    protected abstract IBlockImage OpenImage(ImageOpenOptions options);

    /// <summary>Whether the driver really got O_DIRECT (it falls back silently where the file system refuses); null if it does not say.</summary>
    protected virtual bool? IsDirect(IBlockImage image) => null;

    protected void RandomRead()
    {
        IBlockImage image = _image!;
        for (int i = 0; i < RandomOpsPerInvoke; i++)
        {
            Sync.Complete(image.ReadAsync(NextRandomOffset(), _smallMemory));
        }
    }

    protected void RandomWrite()
    {
        IBlockImage image = _image!;
        for (int i = 0; i < RandomOpsPerInvoke; i++)
        {
            Sync.Complete(image.WriteAsync(NextRandomOffset(), _smallMemory));
        }
    }

    protected void SequentialRead()
    {
        IBlockImage image = _image!;
        for (int i = 0; i < SequentialOpsPerInvoke; i++)
        {
            Sync.Complete(image.ReadAsync(NextSequentialOffset(image), _largeMemory));
        }
    }

    protected void SequentialWrite()
    {
        IBlockImage image = _image!;
        for (int i = 0; i < SequentialOpsPerInvoke; i++)
        {
            Sync.Complete(image.WriteAsync(NextSequentialOffset(image), _largeMemory));
        }
    }

    private long NextRandomOffset()
    {
        long offset = _randomOffsets[_randomCursor];
        _randomCursor = (_randomCursor + 1) & (RandomOffsetCount - 1);
        return offset;
    }

    private long NextSequentialOffset(IBlockImage image)
    {
        long offset = _sequentialOffset;
        long next = offset + LargeBytes;
        _sequentialOffset = next >= image.SizeBytes ? 0 : next;
        return offset;
    }
}
