namespace Tapdisk.Testing;

/// <summary>
/// Today's NBD clients beside Debian 12's, as .ci/newclients installs them: qemu 10 unpacked under the clients
/// directory, and libnbd 1.22 (nbdinfo, nbdcopy, nbdsh) inside a trixie chroot entered through .ci/in-trixie.
/// Missing ones fail the test with the command that installs them (CI counts a skip as a failure).
/// </summary>
public static class NbdClients
{
    /// <summary>Where .ci/newclients put them (TAPDISK_CLIENTS overrides, as for the script).</summary>
    public static string Root =>
        System.Environment.GetEnvironmentVariable("TAPDISK_CLIENTS") is { Length: > 0 } dir ? dir : "/var/tmp/tapdisk-clients";

    /// <summary>A qemu 10 tool (qemu-img, qemu-io, qemu-nbd).</summary>
    public static string Qemu10(string tool)
    {
        string path = Path.Combine(Root, "qemu10", "usr", "bin", tool);
        return File.Exists(path) ? path : throw new InvalidOperationException($"{tool} 10 is not at {path} (bash .ci/setup installs it)");
    }

    /// <summary>A qemu tool of one generation: "7.2" is the system's, "10" the one .ci/newclients unpacked.</summary>
    public static string Qemu(string generation, string tool) => generation == "10" ? Qemu10(tool) : ExternalTool.Require(tool);

    /// <summary>Runs a libnbd 1.22 tool (nbdinfo, nbdcopy, nbdsh) in the trixie chroot; /tmp and /var/tmp are shared.</summary>
    public static ProcessResult Libnbd122(IEnumerable<string> args, string? stdin = null)
    {
        string chroot = Path.Combine(Root, "trixie", "usr", "bin", "nbdinfo");
        if (!File.Exists(chroot))
        {
            throw new InvalidOperationException($"no trixie chroot with libnbd 1.22 at {Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(chroot)))} (bash .ci/setup builds it)");
        }

        return ExternalTool.Run(Path.Combine(ExternalTool.RepoRoot, ".ci", "in-trixie"), args, stdin, TimeSpan.FromMinutes(5));
    }

    /// <summary>Runs a libnbd tool of one generation: "1.14" is the system's, "1.22" the chroot's.</summary>
    public static ProcessResult Libnbd(string generation, string tool, params string[] args) =>
        generation == "1.22" ? Libnbd122([tool, .. args]) : ExternalTool.Run(ExternalTool.Require(tool), args);
}
