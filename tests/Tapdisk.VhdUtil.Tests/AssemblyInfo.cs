using Xunit;

// Serial for the reason Tapdisk.Drivers.Vhd.Tests is: a vhd-util or qemu-img child forked by one test inherits this
// process's fds (and FileStream's flocks) until it execs, so a parallel test reading its own image could see
// "being used by another process" (seen once in CI on CheckTests).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
