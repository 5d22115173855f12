namespace Tapdisk.Blkif;

/// <summary>What XENBLKIF_CONNECT carries for one ring (control-xen.md 5.8).</summary>
public sealed record BlkifConnectParameters(uint Domid, uint Devid, uint[] RingRefs, int Order, BlkifProtocol Protocol, uint RemotePort);
