using Xunit;

// Serial on purpose: a child process (qemu-img, cp) forked by one test briefly inherits every fd of this process
// until it execs, including another test's image fd and its exclusive flock, so a parallel test that closes and
// reopens an image read-write (or patches it with FileStream, which flocks too) could see a spurious EBUSY.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
