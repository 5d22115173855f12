using System.Diagnostics;
using System.Globalization;
using System.Text;
using Tapdisk.Testing;
using Xunit;

namespace Tapdisk.Integration.Tests;

/// <summary>
/// Encrypted VHDs through the real binaries: tap-ctl open -E with the key on stdin, NBD reads and writes with
/// nbdcopy/qemu-io, pause/snapshot/unpause keeping the key, vhd-util key, the key directory and tapdisk serve's
/// raw-ciphertext mode. The reference vector is blktap's own encrypted VHD (shared/vectors/blktap-encrypted).
/// </summary>
public sealed class EncryptedVhdTests : IntegrationTest
{
    private const int Mib = 1024 * 1024;

    // Bytes 0x00..0x3f: the vector's key. Its printable tail ("0123456789:;<=>?") and its hex must never be logged.
    private static readonly byte[] s_vectorKey = [.. Enumerable.Range(0, 64).Select(i => (byte)i)];

    private static string VectorDirectory { get; } = FindVector();

    [Fact]
    public void OpenE_BlktapVector_ServesPlaintextAndRefusesBadKeys_KeyNeverLogged()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        string image = Scratch.File("enc.vhd");
        File.Copy(Path.Combine(VectorDirectory, "enc.vhd"), image);
        string key = Path.Combine(VectorDirectory, "enc,aes-xts-plain,512.key");
        string wrong = Scratch.File("wrong.key");
        File.WriteAllBytes(wrong, [.. Enumerable.Range(0x40, 64).Select(i => (byte)i)]);
        string shortKey = Scratch.File("short.key");
        File.WriteAllBytes(shortKey, "abcde"u8.ToArray());

        using Foreground tapdisk = StartForegroundTapdisk();
        string p = tapdisk.Pid.ToString(CultureInfo.InvariantCulture);
        int minor = Allocate();
        string m = minor.ToString(CultureInfo.InvariantCulture);
        Attach(tapdisk, p, m);

        ProcessResult r = TapCtlWithStdin(wrong, "open", "-p", p, "-m", m, "-a", "vhd:" + image, "-E");
        Assert.Equal(126, r.ExitCode);
        Assert.Equal("Required key not available\n", r.StandardError);

        r = TapCtlWithStdin(shortKey, "open", "-p", p, "-m", m, "-a", "vhd:" + image, "-E");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("Unsupported keysize, use either 256 bit or 512 bit key\n", r.StandardError);

        // Unlike blktap, a keyed VHD opened without a key is refused rather than served as ciphertext.
        r = TapCtl("open", "-p", p, "-m", m, "-a", "vhd:" + image);
        Assert.Equal(126, r.ExitCode);

        r = TapCtlWithStdin(key, "open", "-p", p, "-m", m, "-a", "vhd:" + image, "-E");
        Assert.True(r.ExitCode == 0, r.StandardError);
        Assert.Equal("vhd:" + image, Assert.Single(List("-p", p))["args"]);

        string raw = Scratch.File("out.raw");
        ExternalTool.Run(nbdcopy, [NbdUri(NbdSocket(tapdisk.Pid, minor)), raw], stdin: null, HangGuard).EnsureSuccess("nbdcopy");
        byte[] plain = File.ReadAllBytes(Path.Combine(VectorDirectory, "plaintext-3MiB.bin"));
        byte[] all = File.ReadAllBytes(raw);
        Assert.Equal(8 * Mib, all.Length);
        Assert.True(all.AsSpan(0, plain.Length).SequenceEqual(plain), "plaintext over NBD differs from blktap's");
        Assert.True(all.AsSpan(plain.Length).IndexOfAnyExcept((byte)0) < 0, "unallocated tail must read as zeros");

        // Written through NBD, read back decrypted; stored encrypted.
        QemuIo(NbdSocket(tapdisk.Pid, minor), "write -P 0x5a 5M 64k", "flush", "read -P 0x5a 5M 64k");
        TapCtlOk("close", "-p", p, "-m", m);
        TapCtlOk("detach", "-p", p, "-m", m);
        Assert.DoesNotContain(new string('Z', 64), Encoding.Latin1.GetString(File.ReadAllBytes(image)), StringComparison.Ordinal);

        string log = tapdisk.Stop();
        Assert.Contains("does not match", log, StringComparison.Ordinal); // the refusal was logged, with its reason ...
        AssertNoKey(log);                                                  // ... and without the key
        AssertNoKey(r.StandardOutput + r.StandardError);
    }

    [Fact]
    public void OpenE_ImageWithoutKeyhash_Einval()
    {
        string image = CreateVhd("plain.vhd", 8);
        using Foreground tapdisk = StartForegroundTapdisk();
        string p = tapdisk.Pid.ToString(CultureInfo.InvariantCulture);
        string m = Allocate().ToString(CultureInfo.InvariantCulture);
        Attach(tapdisk, p, m);
        ProcessResult r = TapCtlWithStdin(Path.Combine(VectorDirectory, "enc,aes-xts-plain,512.key"), "open", "-p", p, "-m", m, "-a", "vhd:" + image, "-E");
        Assert.Equal(22, r.ExitCode);
        Assert.Equal("Invalid argument\n", r.StandardError);
        Assert.Equal("0", Assert.Single(List("-p", p))["state"]);
    }

    [Fact]
    public void KeyedChain_VhdUtilKeyOpenEPauseSnapshotUnpause_EveryLayerDecrypts()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        string baseVhd = CreateVhd("disk.vhd", 16);
        string key = Scratch.File("disk,aes-xts-plain,256.key");
        File.WriteAllBytes(key, [.. Enumerable.Range(0x61, 32).Select(i => (byte)i)]);
        VhdUtilOk("key", "-s", "-n", baseVhd, "-k", key);
        Assert.Equal(0, VhdUtil("key", "-c", "-n", baseVhd, "-k", key).ExitCode);

        using Foreground tapdisk = StartForegroundTapdisk();
        string p = tapdisk.Pid.ToString(CultureInfo.InvariantCulture);
        int minor = Allocate();
        string m = minor.ToString(CultureInfo.InvariantCulture);
        string nbd = NbdSocket(tapdisk.Pid, minor);
        Attach(tapdisk, p, m);
        ProcessResult r = TapCtlWithStdin(key, "open", "-p", p, "-m", m, "-a", "vhd:" + baseVhd, "-E");
        Assert.True(r.ExitCode == 0, r.StandardError);
        QemuIo(nbd, "write -P 0x11 0 3M", "flush");

        // The snapshot inherits the keyhash; RESUME reopens the new chain with the key kept from OPEN.
        TapCtlOk("pause", "-p", p, "-m", m);
        string leaf = Scratch.File("disk-leaf.vhd");
        VhdUtilOk("snapshot", "-n", leaf, "-p", baseVhd);
        Assert.Equal(VhdUtilOk("key", "-p", "-n", baseVhd), VhdUtilOk("key", "-p", "-n", leaf));
        TapCtlOk("unpause", "-p", p, "-m", m, "-a", "vhd:" + leaf);
        QemuIo(nbd, "read -P 0x11 0 3M", "write -P 0x22 1M 512k", "flush", "read -P 0x22 1M 512k", "read -P 0x11 0 1M");
        TapCtlOk("close", "-p", p, "-m", m);
        TapCtlOk("detach", "-p", p, "-m", m);
        AssertNoKey(tapdisk.Stop(), key);

        // tapdisk serve: with -k the chain reads as plaintext; with --raw-ciphertext the stored sectors come back as
        // they are; with neither, the keyed chain is refused.
        byte[] expected = new byte[16 * Mib];
        expected.AsSpan(0, 3 * Mib).Fill(0x11);
        expected.AsSpan(Mib, 512 * 1024).Fill(0x22);
        Assert.True(expected.AsSpan().SequenceEqual(ServeAndCopy(nbdcopy, "vhd:" + leaf, "-k", key)), "decrypted chain differs");
        byte[] stored = ServeAndCopy(nbdcopy, "vhd:" + leaf, "--raw-ciphertext");
        Assert.False(stored.AsSpan(0, 512).SequenceEqual(expected.AsSpan(0, 512)), "raw mode must return ciphertext");
        Assert.False(stored.AsSpan(Mib, 512).SequenceEqual(expected.AsSpan(Mib, 512)), "raw mode must return the leaf's ciphertext");

        ProcessResult refused = ExternalTool.Run(Binaries.Tapdisk, ["serve", "-s", Path.Combine(Root, "refused.sock"), "-R", "vhd:" + leaf], stdin: null, HangGuard, Environment);
        Assert.Equal(126, refused.ExitCode);
        Assert.Contains("refusing to serve ciphertext", refused.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void KeyDirectory_KeyFoundByImageName_NoKeyOnTheSocket()
    {
        string nbdcopy = ExternalTool.Require("nbdcopy");
        string image = Scratch.File("enc.vhd");
        File.Copy(Path.Combine(VectorDirectory, "enc.vhd"), image);
        string keys = Directory.CreateDirectory(Scratch.File("keys")).FullName;
        File.Copy(Path.Combine(VectorDirectory, "enc,aes-xts-plain,512.key"), Path.Combine(keys, "enc,aes-xts-plain,512.key"));

        Environment["TAPDISK3_CRYPTO_KEYDIR"] = Scratch.File("nothing-here") + "," + keys;
        TapCtlOk("create", "-a", "vhd:" + image);
        Dictionary<string, string> row = Assert.Single(List());
        int pid = int.Parse(row["pid"], CultureInfo.InvariantCulture);
        TrackTapdisk(pid);

        string raw = Scratch.File("out.raw");
        ExternalTool.Run(nbdcopy, [NbdUri(NbdSocket(pid, int.Parse(row["minor"], CultureInfo.InvariantCulture))), raw], stdin: null, HangGuard).EnsureSuccess("nbdcopy");
        byte[] plain = File.ReadAllBytes(Path.Combine(VectorDirectory, "plaintext-3MiB.bin"));
        Assert.True(File.ReadAllBytes(raw).AsSpan(0, plain.Length).SequenceEqual(plain));
        TapCtlOk("destroy", "-p", row["pid"], "-m", row["minor"]);
    }

    private void Attach(Foreground tapdisk, string p, string m)
    {
        ProcessResult r = TapCtl("attach", "-p", p, "-m", m);
        Assert.True(r.ExitCode == 0, $"tap-ctl attach exited {r.ExitCode}: {r.StandardError}\ntapdisk log:\n{tapdisk.Log}");
    }

    private byte[] ServeAndCopy(string nbdcopy, string parameters, params string[] options)
    {
        string socket = Path.Combine(Root, "s" + Guid.NewGuid().ToString("N")[..6] + ".sock");
        Process p = StartHelper(Binaries.Tapdisk, ["serve", "-s", socket, "-R", .. options, parameters]);
        WaitUntil(() => File.Exists(socket) || p.HasExited, "tapdisk serve to listen on " + socket);
        Assert.False(p.HasExited, $"tapdisk serve {parameters} exited {(p.HasExited ? p.ExitCode : 0)}");
        string raw = Scratch.File(Path.GetFileName(socket) + ".raw");
        ExternalTool.Run(nbdcopy, [NbdUri(socket), raw], stdin: null, HangGuard).EnsureSuccess("nbdcopy");
        Signal(p.Id, "TERM");
        p.WaitForExit(HangGuard);
        return File.ReadAllBytes(raw);
    }

    /// <summary>tap-ctl with stdin redirected from a file by the shell, exactly as "tap-ctl ... -E &lt; keyfile".</summary>
    private ProcessResult TapCtlWithStdin(string stdinFile, params string[] args)
    {
        var env = new Dictionary<string, string>(Environment) { ["TDI_STDIN"] = stdinFile };
        return ExternalTool.Run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \"$TDI_STDIN\"", Binaries.TapCtl, .. args], stdin: null, HangGuard, env);
    }

    /// <summary>A tapdisk in the foreground (-D -v) whose stderr log the test reads.</summary>
    private Foreground StartForegroundTapdisk()
    {
        var psi = new ProcessStartInfo(Binaries.Tapdisk) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-D");
        psi.ArgumentList.Add("-v");
        foreach (KeyValuePair<string, string> kv in Environment)
        {
            psi.Environment[kv.Key] = kv.Value;
        }

        Process process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start tapdisk");
        TrackTapdisk(process.Id);
        var tapdisk = new Foreground(process);
        // The "started" line comes once the socket listens (the file itself exists from bind(2) on).
        WaitUntil(() => tapdisk.Log.Contains("started, control socket", StringComparison.Ordinal) || process.HasExited, "tapdisk -D to listen on its control socket");
        if (process.HasExited)
        {
            Assert.Fail("tapdisk -D exited: " + tapdisk.Stop());
        }

        return tapdisk;
    }

    private static void AssertNoKey(string text, string? keyFile = null)
    {
        byte[] key = keyFile is null ? s_vectorKey : File.ReadAllBytes(keyFile);
        Assert.DoesNotContain(Convert.ToHexStringLower(key.AsSpan(0, 8)), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToHexStringLower(key.AsSpan(key.Length - 8)), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Encoding.Latin1.GetString(key, key.Length - 16, 16), text, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String(key), text, StringComparison.Ordinal);
    }

    private static string FindVector()
    {
        string beside = Path.GetFullPath(Path.Combine(ExternalTool.RepoRoot, "..", "shared", "vectors", "blktap-encrypted"));
        string fixedPath = "/work/shared/vectors/blktap-encrypted";
        return Directory.Exists(beside) ? beside : Directory.Exists(fixedPath) ? fixedPath
            : throw new DirectoryNotFoundException($"blktap encrypted-VHD vector not found at {beside} (shared/ beside the repo)");
    }

    private sealed class Foreground : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _stderr = new();
        private readonly Lock _lock = new();

        public Foreground(Process process)
        {
            _process = process;
            _process.ErrorDataReceived += (_, e) =>
            {
                lock (_lock)
                {
                    _stderr.Append(e.Data).Append('\n');
                }
            };
            _process.BeginErrorReadLine();
            _ = _process.StandardOutput.ReadToEndAsync();
        }

        public int Pid => _process.Id;

        public string Log
        {
            get
            {
                lock (_lock)
                {
                    return _stderr.ToString();
                }
            }
        }

        /// <summary>SIGTERM, wait, and the whole stderr log.</summary>
        public string Stop()
        {
            // After the last detach tapdisk exits by itself (as blktap's does), so it may be gone or on its way out.
            if (!_process.WaitForExit(TimeSpan.FromSeconds(2)))
            {
                try
                {
                    Signal(_process.Id, "TERM");
                }
                catch (InvalidOperationException) when (_process.WaitForExit(HangGuard))
                {
                    // It exited between the wait and the signal.
                }

                if (!_process.WaitForExit(HangGuard))
                {
                    _process.Kill();
                }
            }

            _process.WaitForExit();
            lock (_lock)
            {
                return _stderr.ToString();
            }
        }

        public void Dispose()
        {
            Stop();
            _process.Dispose();
        }
    }
}
