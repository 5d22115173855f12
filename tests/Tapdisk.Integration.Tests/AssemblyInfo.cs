using System.Runtime.Versioning;
using Xunit;

[assembly: SupportedOSPlatform("linux")]

// Every test spawns real daemons and peer tools; run them one at a time so they do not fight over the CPUs.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
