using System.Runtime.Versioning;

// The ENOSPC signal file is created with mode 0666 (File.SetUnixFileMode): Linux only, as the whole project is.
[assembly: SupportedOSPlatform("linux")]
