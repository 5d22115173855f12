using System.Text.Json;

namespace Tapdisk.Filters.Cbt.Tests;

/// <summary>The CBT logs blktap's own tapdisk wrote after known writes (shared/vectors/blktap-cbt, beside the repo).</summary>
internal static class BlktapCbtVectors
{
    public static string Directory { get; } = Find();

    public static string Log(string name) => Path.Combine(Directory, "logs", name);

    /// <summary>One vector: the disk size, the size the log was made for, and the writes that reached the log driver.</summary>
    public sealed record Vector(string File, long DiskBytes, long LogSizeBytes, IReadOnlyList<(long Offset, long Length)> Writes);

    public static IReadOnlyList<Vector> All { get; } = Load();

    public static Vector Get(string file) => All.Single(v => v.File == file);

    private static List<Vector> Load()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory, "vectors.json")));
        var vectors = new List<Vector>();
        foreach (JsonElement v in doc.RootElement.GetProperty("vectors").EnumerateArray())
        {
            long disk = v.GetProperty("disk").GetInt64();
            long logSize = v.GetProperty("header").GetProperty("size").GetInt64();
            var writes = v.GetProperty("writes").EnumerateArray().Select(w => (w.GetProperty("offset").GetInt64(), w.GetProperty("length").GetInt64())).ToList();
            vectors.Add(new Vector(v.GetProperty("file").GetString()!, disk, logSize, writes));
        }

        return vectors;
    }

    private static string Find()
    {
        // The repo's shared facts live at ../shared from its root (shared/README.md).
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "..", "shared", "vectors", "blktap-cbt");
            if (File.Exists(Path.Combine(d.FullName, "Tapdisk.sln")) && System.IO.Directory.Exists(candidate))
            {
                return Path.GetFullPath(candidate);
            }
        }

        const string fallback = "/work/shared/vectors/blktap-cbt";
        return System.IO.Directory.Exists(fallback) ? fallback
            : throw new DirectoryNotFoundException($"blktap CBT vectors not found above {AppContext.BaseDirectory} (expected ../shared/vectors/blktap-cbt beside the repo)");
    }
}
