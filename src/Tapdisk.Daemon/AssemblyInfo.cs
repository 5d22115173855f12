using System.Runtime.Versioning;

// tapdisk runs on Linux only (STYLE.md 4.3); this lets it use the Unix file-mode APIs without platform guards.
[assembly: SupportedOSPlatform("linux")]
