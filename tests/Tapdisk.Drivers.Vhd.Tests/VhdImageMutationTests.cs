using Tapdisk.Storage;
using Tapdisk.Testing;
using Xunit;
using Xunit.Abstractions;
using static Tapdisk.Drivers.Vhd.Tests.VhdTestSupport;

namespace Tapdisk.Drivers.Vhd.Tests;

/// <summary>
/// Random byte flips in the metadata of valid images: open, read and close either work or fail with the documented
/// exception types (ImageFormatException, ImageOpenException, IOException), never anything else (STYLE.md 6, 8).
/// </summary>
public sealed class VhdImageMutationTests
{
    private const int Iterations = 150;
    private const long MaxBytesRead = 32L * MiB;
    private static readonly int[] s_fixedSeeds = [1, 2, 3];
    private readonly ITestOutputHelper _output;

    public VhdImageMutationTests(ITestOutputHelper output)
    {
        _output = output;
    }

    public static TheoryData<bool> Kinds => new() { false, true };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FlipMetadataBytes_FixedAndRandomSeeds_OnlyDocumentedFailures(bool differencing)
    {
        using var dir = new TempDirectory();
        string parent = dir.File("p.vhd");
        CorruptVhd.CreateWithData(parent);
        string target = parent;
        if (differencing)
        {
            target = dir.File("c.vhd");
            VhdCreator.CreateDifferencing(target, parent);
            using IBlockImage child = Open(target);
            Run(child.WriteAsync(4 * MiB, Pattern(8192, 100)));
            Run(child.WriteAsync(MiB, Pattern(4096, 101)));
        }

        string mutant = dir.File("m.vhd");
        File.Copy(target, mutant);
        byte[] original = File.ReadAllBytes(target);
        int prefix = differencing ? 0x1200 : 0xC00;
        string parentHash = Sha256(parent);

        // TAPDISK_TEST_SEED replays a logged random seed.
        int randomSeed = int.TryParse(Environment.GetEnvironmentVariable("TAPDISK_TEST_SEED"), out int replay) ? replay : Random.Shared.Next();
        _output.WriteLine($"random seed: {randomSeed} (fixed seeds: {string.Join(", ", s_fixedSeeds)})");
        foreach (int seed in s_fixedSeeds.Append(randomSeed))
        {
            var rng = new Random(seed);
            for (int i = 0; i < Iterations; i++)
            {
                Restore(mutant, original, prefix);
                var flips = new List<string>();
                int count = rng.Next(1, 5);
                for (int k = 0; k < count; k++)
                {
                    long offset = rng.Next(4) == 0 ? original.Length - VhdFooter.Size + rng.Next(VhdFooter.Size) : rng.Next(prefix);
                    byte mask = (byte)rng.Next(1, 256);
                    CorruptVhd.PatchBytes(mutant, offset, [(byte)(original[offset] ^ mask)]);
                    flips.Add($"0x{offset:x}^0x{mask:x2}");
                }

                string what = $"seed {seed} iteration {i} flips [{string.Join(' ', flips)}]";
                Exception? failure = Record.Exception(() => Exercise(mutant, readOnly: i % 2 == 0));
                Assert.True(failure is null or ImageFormatException or ImageOpenException or IOException, $"{what}: {failure}");
            }
        }

        Assert.Equal(parentHash, Sha256(parent));
    }

    private static void Exercise(string path, bool readOnly)
    {
        using IBlockImage image = Open(path, readOnly);
        byte[] buffer = new byte[MiB];
        long limit = Math.Min(image.SizeBytes, MaxBytesRead) / 512 * 512;
        for (long at = 0; at < limit; at += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, limit - at);
            Run(image.ReadAsync(at, buffer.AsMemory(0, n)));
        }

        Run(image.GetExtentsAsync(0, Math.Min(image.SizeBytes, MaxBytesRead), new ExtentList()));
    }

    /// <summary>Puts back the metadata prefix and footer (the only bytes a mutation or a repairing close touched), or the whole file.</summary>
    private static void Restore(string path, byte[] original, int prefix)
    {
        if (new FileInfo(path).Length != original.Length)
        {
            File.WriteAllBytes(path, original);
            return;
        }

        CorruptVhd.PatchBytes(path, 0, original.AsSpan(0, prefix));
        CorruptVhd.PatchBytes(path, original.Length - VhdFooter.Size, original.AsSpan(original.Length - VhdFooter.Size));
    }
}
