using System.Runtime.Versioning;

// tap-ctl drives Linux tapdisks over UNIX sockets with flock(2): Linux only.
[assembly: SupportedOSPlatform("linux")]
