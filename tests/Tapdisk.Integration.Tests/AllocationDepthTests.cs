using System.Globalization;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>qemu:allocation-depth on a VBD serving a VHD chain, read with nbdinfo (1 = the leaf, 2 = its parent, 0 = nowhere).</summary>
public sealed class AllocationDepthTests : IntegrationTest
{
    [Theory]
    [InlineData("1.14")]
    [InlineData("1.22")] // extended headers: the depths come back in BLOCK_STATUS_EXT chunks
    public void NbdinfoMap_VhdChain_DepthOfEachRun(string libnbd)
    {
        string parent = CreateVhd("base.vhd", 16);
        (string pid, string minor) = CreateVbd("vhd:" + parent);
        QemuIo(Nbd(pid, minor), "write -P 1 0 1M", "write -P 2 4M 512k");
        TapCtlOk("destroy", "-p", pid, "-m", minor);

        string leaf = Scratch.File("leaf.vhd");
        VhdUtilOk("snapshot", "-n", leaf, "-p", parent);
        (pid, minor) = CreateVbd("vhd:" + leaf);
        QemuIo(Nbd(pid, minor), "write -P 3 512k 1M", "write -P 4 8M 64k");

        ProcessResult map = NbdClients.Libnbd(libnbd, "nbdinfo", "--map=qemu:allocation-depth", NbdUri(Nbd(pid, minor))).EnsureSuccess("nbdinfo --map");
        Assert.Equal(
            ["0 524288 2", "524288 1048576 1", "1572864 2621440 0", "4194304 524288 2", "4718592 3670016 0", "8388608 65536 1", "8454144 8323072 0"],
            map.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(3))));
        TapCtlOk("destroy", "-p", pid, "-m", minor);
    }

    private (string Pid, string Minor) CreateVbd(string parameters)
    {
        TapCtlOk("create", "-a", parameters);
        Dictionary<string, string> row = Assert.Single(List());
        TrackTapdisk(int.Parse(row["pid"], CultureInfo.InvariantCulture));
        return (row["pid"], row["minor"]);
    }

    private string Nbd(string pid, string minor) => NbdSocket(int.Parse(pid, CultureInfo.InvariantCulture), int.Parse(minor, CultureInfo.InvariantCulture));
}
