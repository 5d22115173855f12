namespace Tapdisk.Storage;

/// <summary>Transfer limits in bytes: requests must be multiples of <see cref="MinimumBlockBytes"/> at aligned offsets.</summary>
public readonly record struct IoLimits(int MinimumBlockBytes, int PreferredBlockBytes, int MaximumTransferBytes)
{
    public const int SectorSize = 512;

    public static IoLimits Default { get; } = new(SectorSize, 4096, 32 * 1024 * 1024);
}
