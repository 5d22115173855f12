namespace Tapdisk.Tapback;

/// <summary>The tapdisk process and minor serving a device, and the geometry DISK_INFO reported.</summary>
internal sealed record TapdiskDisk(int Pid, int Minor, ulong Sectors, uint SectorSize, uint Info);
