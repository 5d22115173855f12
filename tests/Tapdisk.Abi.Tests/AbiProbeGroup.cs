namespace Tapdisk.Abi.Tests;

/// <summary>One parsed manifest file: the preamble lines of C it needs and its entries.</summary>
public sealed record AbiProbeGroup(string Name, string Arch, IReadOnlyList<string> Preamble, IReadOnlyList<AbiProbeEntry> Entries);
