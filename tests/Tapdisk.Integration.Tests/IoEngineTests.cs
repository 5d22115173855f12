using System.Diagnostics;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>The I/O engine a tapdisk process chooses at start-up: said in its first line, forced either way, refused when misspelt.</summary>
public sealed class IoEngineTests : IntegrationTest
{
    [Theory]
    [InlineData("io_uring")]
    [InlineData("threads")]
    public void Serve_ForcedEngine_SaysItAndServesData(string engine)
    {
        string file = Scratch.File(engine + ".raw");
        File.WriteAllBytes(file, new byte[16 << 20]);
        string socket = Path.Combine(Root, engine + ".sock");
        using Process server = StartServe(engine, socket, "aio:" + file);
        string? line;
        do
        {
            // Log lines ("tapdisk[pid]: ...") may come first; the serve line says what runs.
            line = server.StandardError.ReadLine();
        }
        while (line is not null && !line.StartsWith("tapdisk serve:", StringComparison.Ordinal));

        Assert.Equal($"tapdisk serve: serving aio:{file} ({16 << 20} bytes) on nbd+unix:///?socket={socket}, I/O engine {engine} (TAPDISK_IO_ENGINE={engine})", line);
        _ = server.StandardError.ReadToEndAsync();

        QemuIo(socket, "write -P 0x3c 1M 2M", "write -P 0xc3 15M 1M", "flush");
        QemuIoReadOnly(socket, "read -P 0x3c 1M 2M", "read -P 0xc3 15M 1M", "read -P 0 0 1M");
        Signal(server.Id, "TERM");
        Assert.True(server.WaitForExit(HangGuard), "tapdisk serve did not exit on SIGTERM");
        Assert.Equal(0, server.ExitCode);
        byte[] data = File.ReadAllBytes(file);
        Assert.Equal(0x3c, data[(3 << 20) - 1]);
        Assert.Equal(0xc3, data[(16 << 20) - 1]);
    }

    [Theory]
    [InlineData("TAPDISK_IO_ENGINE", "uring", "TAPDISK_IO_ENGINE must be io_uring or threads, not 'uring'")]
    [InlineData("TAPDISK_POLL_MAX_US", "50us", "TAPDISK_POLL_MAX_US=50us: expected microseconds from 0 to 1000000")]
    public async Task Serve_MisspeltSetting_RefusesToStart(string variable, string value, string error)
    {
        string file = Scratch.File("x.raw");
        File.WriteAllBytes(file, new byte[1 << 20]);
        string socket = Path.Combine(Root, "x.sock");
        using Process server = StartServe("io_uring", socket, "aio:" + file, (variable, value));
        Task<string> errors = server.StandardError.ReadToEndAsync();
        if (!server.WaitForExit(HangGuard))
        {
            server.Kill();
            Assert.Fail($"tapdisk serve started with {variable}={value} and did not exit");
        }

        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains(error, await errors, StringComparison.Ordinal);
        Assert.False(File.Exists(socket), "nothing may listen");
    }

    private Process StartServe(string engine, string socket, string parameters, params (string Name, string Value)[] settings)
    {
        ProcessStartInfo psi = ExternalTool.StartInfo(Binaries.Tapdisk, ["serve", "-s", socket, parameters], Environment);
        psi.Environment["TAPDISK_IO_ENGINE"] = engine;
        foreach ((string name, string value) in settings)
        {
            psi.Environment[name] = value;
        }

        psi.RedirectStandardError = true;
        psi.RedirectStandardOutput = true;
        Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start tapdisk serve");
        _ = p.StandardOutput.ReadToEndAsync();
        return p;
    }
}
