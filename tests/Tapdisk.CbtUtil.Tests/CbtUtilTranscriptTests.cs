using System.Diagnostics;
using System.Text;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.CbtUtil.Tests;

/// <summary>
/// Replays reference-transcript.md section 11 (every command blktap's cbt-util was run with, in order, in one scratch
/// directory) with our cbt-util first on PATH, and compares stdout, stderr and exit code of every block verbatim.
/// </summary>
public sealed class CbtUtilTranscriptTests
{
    private const string NoNewline = "⏎(no trailing newline)";

    [Fact]
    public void Transcript_EveryBlock_SameOutputsAndExitCode()
    {
        string binary = ExternalTool.RepoExecutable("Tapdisk.CbtUtil", "cbt-util");
        List<Block> blocks = Parse(File.ReadAllText(Path.Combine(SharedDirectory(), "spec", "reference-transcript.md")));
        Assert.True(blocks.Count > 100, $"only {blocks.Count} cbt-util blocks found in the transcript");

        using var work = new TempDirectory();
        var environment = new Dictionary<string, string>
        {
            ["PATH"] = Path.GetDirectoryName(binary) + ":" + System.Environment.GetEnvironmentVariable("PATH"),
            ["TD"] = Path.Combine(SharedDirectory(), "vectors", "blktap-cbt", "logs"),
            ["LC_ALL"] = "C",
        };
        var mismatches = new StringBuilder();
        foreach (Block block in blocks)
        {
            // SIGPIPE back to its default: .NET ignores it, children inherit that, and `yes | head` would then complain.
            ProcessStartInfo psi = ExternalTool.StartInfo("/usr/bin/env", ["--default-signal=PIPE", "/bin/bash", "-c", block.Command], environment);
            psi.WorkingDirectory = work.Path;
            ProcessResult r = ExternalTool.Run(psi, stdin: null, TimeSpan.FromMinutes(2));
            if (r.StandardOutput != block.Stdout || r.StandardError != block.Stderr || r.ExitCode != block.ExitCode)
            {
                mismatches.Append(CultureInfoInvariant($"$ {block.Command}\nexpected exit {block.ExitCode}\n{block.Stdout}--- stderr ---\n{block.Stderr}\ngot {r}\n\n"));
            }
        }

        Assert.True(mismatches.Length == 0, mismatches.ToString());
    }

    private static string CultureInfoInvariant(FormattableString text) => FormattableString.Invariant(text);

    private sealed record Block(string Command, string Stdout, string Stderr, int ExitCode);

    /// <summary>The fenced blocks of section 11: "$ command", stdout, optionally "--- stderr ---" and stderr, "[exit N]".</summary>
    private static List<Block> Parse(string transcript)
    {
        int start = transcript.IndexOf("## 11. cbt-util", StringComparison.Ordinal);
        Assert.True(start >= 0, "section 11 (cbt-util) not found in reference-transcript.md");
        int end = transcript.IndexOf("\n## ", start + 10, StringComparison.Ordinal);
        string section = end < 0 ? transcript[start..] : transcript[start..end];

        var blocks = new List<Block>();
        string[] parts = section.Split("```\n");
        for (int i = 1; i < parts.Length; i += 2)
        {
            string body = parts[i];
            if (!body.StartsWith("$ ", StringComparison.Ordinal))
            {
                continue;
            }

            int commandEnd = body.IndexOf('\n', StringComparison.Ordinal);
            string command = body[2..commandEnd];
            string rest = body[(commandEnd + 1)..];
            int exitAt = rest.LastIndexOf("[exit ", StringComparison.Ordinal);
            int exitCode = int.Parse(rest[(exitAt + 6)..rest.IndexOf(']', exitAt)], System.Globalization.CultureInfo.InvariantCulture);
            string outputs = rest[..exitAt];
            string stdout = outputs;
            string stderr = string.Empty;
            int split = outputs.IndexOf("--- stderr ---\n", StringComparison.Ordinal);
            if (split >= 0)
            {
                stdout = outputs[..split];
                stderr = outputs[(split + "--- stderr ---\n".Length)..];
            }

            blocks.Add(new Block(command, Unmark(stdout), Unmark(stderr), exitCode));
        }

        return blocks;
    }

    private static string Unmark(string text) => text.Replace(NoNewline + "\n", string.Empty, StringComparison.Ordinal);

    private static string SharedDirectory()
    {
        string beside = Path.GetFullPath(Path.Combine(ExternalTool.RepoRoot, "..", "shared"));
        const string fixedPath = "/work/shared";
        return Directory.Exists(Path.Combine(beside, "spec")) ? beside : Directory.Exists(fixedPath) ? fixedPath
            : throw new DirectoryNotFoundException($"shared/ not found beside the repo at {beside}");
    }
}
